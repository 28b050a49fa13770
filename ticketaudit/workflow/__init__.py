"""Review-workflow adapters over the report's JSON document: JUnit XML, a pull-request summary in
Markdown, a model-card section, an MLflow run, audits compared between releases. None computes a
number of its own: each reads the validated document, so what it says is what the report says."""
