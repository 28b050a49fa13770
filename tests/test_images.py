"""Image models: the processor against transformers' own, every loader, bad inputs, batching, ViT attention
and pixel attribution maps with a known answer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli
from image_models import (PROCESSOR, SIDE, cnn_bundles, huggingface_resnet, huggingface_vit, quadrant_models,
                          write_images, write_processor)
from PIL import Image

import ticketaudit as ta
from ticketaudit.exceptions import InvalidInputError
from ticketaudit.images import ImageInputs, ImageProcessor

transformers = pytest.importorskip("transformers")


def _random_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)) for h, w in [(40, 30), (17, 50), (64, 64)]]


@pytest.mark.parametrize("processor", [
    lambda: transformers.ViTImageProcessorPil(size={"height": 24, "width": 24}),
    lambda: transformers.ConvNextImageProcessorPil(size={"shortest_edge": 24}, crop_pct=0.875),
    lambda: transformers.CLIPImageProcessorPil(size={"shortest_edge": 24}, crop_size={"height": 20, "width": 20}),
    lambda: transformers.BeitImageProcessorPil(size={"height": 28, "width": 28}, do_center_crop=True,
                                               crop_size={"height": 24, "width": 24}),
    lambda: transformers.MobileViTImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 24, "width": 24}),
    lambda: transformers.EfficientNetImageProcessorPil(size={"height": 24, "width": 24}, rescale_offset=True,
                                                       do_normalize=False),
], ids=["vit", "convnext-crop-pct", "clip-shortest-edge-crop", "beit-center-crop", "mobilevit-bgr",
        "efficientnet-offset"])
def test_processor_matches_transformers(processor, tmp_path: Path) -> None:
    reference = processor()
    reference.save_pretrained(tmp_path)
    ours = ImageProcessor.from_file(tmp_path / "preprocessor_config.json")
    for image in _random_images():
        expected = reference(image, return_tensors="np")["pixel_values"][0]
        np.testing.assert_allclose(ours(image), expected, atol=1e-5)


def _images_in_every_mode() -> dict[str, Image.Image]:
    """One image per 8-bit Pillow mode a photo or scan arrives in, transparency included (alpha bands, a
    palette's transparent index, a grayscale's transparent value)."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (21, 26, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (21, 26), dtype=np.uint8)
    alpha[:5] = 0  # a fully transparent band: white, not black, under transformers' convert_to_rgb
    base = Image.fromarray(rgb)
    palette_transparent = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_transparent.info["transparency"] = 3
    gray_transparent = base.convert("L")
    gray_transparent.info["transparency"] = int(np.asarray(gray_transparent)[0, 0])
    return {
        "RGB": base, "L": base.convert("L"), "1": base.convert("1"), "P": base.convert("P"),
        "P-transparency": palette_transparent, "L-transparency": gray_transparent,
        "RGBA": Image.fromarray(np.dstack([rgb, alpha])), "LA": Image.merge("LA", [base.convert("L"), Image.fromarray(alpha)]),
        "PA": Image.merge("LA", [base.convert("L"), Image.fromarray(alpha)]).convert("PA"),
        "CMYK": base.convert("CMYK"), "YCbCr": base.convert("YCbCr"),
    }


HF_PROCESSORS = {
    "vit": lambda: transformers.ViTImageProcessorPil(size={"height": 24, "width": 24}),
    "clip": lambda: transformers.CLIPImageProcessorPil(size={"shortest_edge": 24}, crop_size={"height": 20, "width": 20}),
    "convnext": lambda: transformers.ConvNextImageProcessorPil(size={"shortest_edge": 24}, crop_pct=0.875),
}


@pytest.mark.parametrize("kind", sorted(HF_PROCESSORS))
@pytest.mark.parametrize("mode", sorted(_images_in_every_mode()))
def test_every_8_bit_mode_is_read_as_transformers_reads_it(kind: str, mode: str, tmp_path: Path) -> None:
    """CLIP converts to RGB itself (``do_convert_rgb``); ViT and ConvNeXt refuse what is not RGB, so their
    reference is the processor on transformers' own ``convert_to_rgb`` of the image. Both composite onto white."""
    from transformers.image_transforms import convert_to_rgb

    reference = HF_PROCESSORS[kind]()
    reference.save_pretrained(tmp_path)
    ours = ImageProcessor.from_file(tmp_path / "preprocessor_config.json")
    image = _images_in_every_mode()[mode]
    given = image if reference.do_convert_rgb else convert_to_rgb(image, return_numpy=True)
    expected = reference(given, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(ours(image), expected, atol=1e-5)


def test_transparent_pixels_are_white_not_black() -> None:
    ours = ImageProcessor.from_dict({**PROCESSOR, "do_normalize": False}, source="test")
    clear = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    np.testing.assert_allclose(ours(clear), 1.0)
    gray = ImageProcessor.from_dict({**PROCESSOR, "do_normalize": False, "image_mean": [0.5], "image_std": [0.5],
                                     "num_channels": 1},
                                    source="test")
    assert gray(Image.new("LA", (5, 7), (0, 0))).shape == (1, SIDE, SIDE)


HIGH_BIT = {
    "I;16": lambda px: Image.fromarray(px.astype(np.uint16) * 257),
    "I;16B": lambda px: Image.fromarray(px.astype(np.uint16) * 257).convert("I").convert("I;16B"),
    "I": lambda px: Image.fromarray(px.astype(np.int32) * 1000),
    "F": lambda px: Image.fromarray(px.astype(np.float32) / 255),
}


@pytest.mark.parametrize("mode", sorted(HIGH_BIT))
def test_images_of_more_than_8_bits_are_refused_naming_the_mode(images, mode: str, tmp_path: Path) -> None:
    """16-bit, 32-bit and float images would be clipped to 255 by a plain conversion (98% -> 44% accuracy on the
    demo's images); the audit refuses them, naming the mode, the row and the file, before writing anything."""
    folder, table, dense, ticket = images
    data = tmp_path / "data"
    data.mkdir()
    (data / "images").symlink_to(folder / "images")
    with Image.open(folder / table.loc[3, "path"]) as image:
        pixels = np.asarray(image.convert("L"))
    suffix = ".png" if mode == "I;16" else ".tif"
    try:
        HIGH_BIT[mode](pixels).save(data / f"deep{suffix}")
    except (OSError, KeyError, ValueError):
        pytest.skip(f"Pillow cannot write mode {mode} here")
    rows = table.copy()
    rows.loc[3, "path"] = f"deep{suffix}"
    rows.to_csv(data / "data.csv", index=False)
    run, out = _cli(data, dense, ticket, tmp_path)
    assert run.code == 2, run.stdout + run.stderr
    with Image.open(data / f"deep{suffix}") as deep:
        deep.load()
        saved = deep.copy()
    assert f"mode '{saved.mode}'" in run.stderr
    assert "row 3" in run.stderr and "deep" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()
    with pytest.raises(InvalidInputError, match="more than 8 bits"):
        ImageProcessor.from_dict(PROCESSOR, source="test")(saved)


@pytest.mark.parametrize("change, words", [
    ({"image_mean": None}, "image_mean"),
    ({"image_std": [0.5, 0.5]}, "image_std"),
    ({"image_std": [0.5, 0.0, 0.5]}, "positive"),
    ({"size": {"longest": 3}}, "size"),
    ({"size": {"height": 0, "width": 8}}, "positive integer"),
    ({"do_center_crop": True}, "crop_size"),
    ({"resample": 9}, "resample"),
    ({"rescale_factor": -1}, "rescale_factor"),
    ({"do_pad": True}, "do_pad"),
    ({"size_divisor": 32}, "size_divisor"),
])
def test_malformed_processor_is_refused_naming_the_entry(change: dict, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        ImageProcessor.from_dict({**PROCESSOR, **change}, source="p.json")


def test_processor_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "preprocessor_config.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        ImageProcessor.from_file(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    table = write_images(folder, 90)
    table.to_csv(folder / "data.csv", index=False)
    dense, ticket = cnn_bundles(folder)
    return folder, table, dense, ticket


def _audit(dense, ticket, data, **options):
    options = {"image": "path", "target": "label", "sensitive": "group", "seed": 0, "n_boot": 100,
               "analyses": "metrics,disagreement,compression", **options}
    return ta.audit(dense=dense, ticket=ticket, data=data, **options)


def test_relative_paths_are_read_from_the_table_folder(images, tmp_path: Path, monkeypatch) -> None:
    folder, table, dense, ticket = images
    monkeypatch.chdir(tmp_path)  # not the table's folder
    from_file = _audit(dense, ticket, folder / "data.csv").to_dict()
    absolute = table.assign(path=[str(folder / p) for p in table["path"]])
    from_frame = _audit(dense, ticket, absolute).to_dict()
    for key in ("performance", "subgroups", "checks"):
        assert from_file[key] == from_frame[key]


def test_parquet_bytes_and_datasets_structs_give_the_same_audit(images, tmp_path: Path) -> None:
    folder, table, dense, ticket = images
    expected = _audit(dense, ticket, folder / "data.csv").to_dict()
    encoded = [(folder / p).read_bytes() for p in table["path"]]
    table.assign(path=encoded).to_parquet(tmp_path / "bytes.parquet")
    table.assign(path=[{"bytes": b, "path": None} for b in encoded]).to_parquet(tmp_path / "structs.parquet")
    for name in ("bytes.parquet", "structs.parquet"):
        got = _audit(dense, ticket, tmp_path / name).to_dict()
        assert got["performance"] == expected["performance"] and got["subgroups"] == expected["subgroups"]


def test_batch_size_never_changes_the_json(images) -> None:
    folder, _, dense, ticket = images
    one = _audit(dense, ticket, folder / "data.csv", batch_size=1, analyses=None, attribution_rows=20).to_dict()
    many = _audit(dense, ticket, folder / "data.csv", batch_size=64, analyses=None, attribution_rows=20).to_dict()
    assert json.dumps(one, sort_keys=True) == json.dumps(many, sort_keys=True)


def test_predictions_equal_the_model_on_the_processed_pixels(images) -> None:
    folder, table, dense, ticket = images
    result = _audit(dense, ticket, folder / "data.csv")
    from ticketaudit.tickets import load_dense

    loaded = load_dense(dense)
    pixels = np.stack([loaded.image_processor(Image.open(folder / p)) for p in table["path"]])
    with torch.no_grad():
        predicted = loaded.module.double()(torch.as_tensor(pixels, dtype=torch.float64)).argmax(1).numpy()
    accuracy = float((predicted == table["label"].to_numpy()).mean())
    assert result.performance.overall.metrics["accuracy"].dense == pytest.approx(accuracy, abs=1e-12)


def test_images_are_decoded_batch_by_batch(images, monkeypatch) -> None:
    folder, table, _, _ = images
    import ticketaudit.images as module

    opened = []
    real = module.open_image
    monkeypatch.setattr(module, "open_image", lambda ref, **kw: opened.append(ref) or real(ref, **kw))
    inputs = ImageInputs(np.array([str(folder / p) for p in table["path"]], dtype=object), np.arange(len(table)),
                         ImageProcessor.from_dict(PROCESSOR, source="t"), "path")
    assert opened == []  # building the inputs reads no image
    sizes = []
    for _, pixels in inputs.batches(rows=16):
        sizes.append(len(pixels))
        assert len(opened) == sum(sizes)  # only the batch in hand has been decoded
    assert max(sizes) == 16 and sum(sizes) == len(table)


def test_state_dict_with_factory_and_image_processor(images, tmp_path: Path) -> None:
    folder, _, dense, ticket = images
    from safetensors.torch import load_file, save_file

    save_file(load_file(dense / "model.safetensors"), tmp_path / "dense.safetensors")
    save_file(load_file(ticket / "model.safetensors"), tmp_path / "ticket.safetensors")
    processor = write_processor(tmp_path / "preprocessor_config.json", PROCESSOR)
    got = _audit(tmp_path / "dense.safetensors", tmp_path / "ticket.safetensors", folder / "data.csv",
                 factory="image_models:build_cnn", image_processor=processor).to_dict()
    expected = _audit(dense, ticket, folder / "data.csv").to_dict()
    assert got["performance"] == expected["performance"]


def _cli(folder: Path, dense: Path, ticket: Path, tmp_path: Path, *extra: str, data: str = "data.csv"):
    out = tmp_path / "r.html"
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(folder / data),
                   "--image", "path", "--target", "label", "--sensitive", "group", "--seed", "0", "--n-boot", "100",
                   "--analyses", "metrics", "--out", str(out), "--quiet", *extra])
    return run, out


@pytest.mark.parametrize("damage, words", [
    ("missing", "does not exist"),
    ("text", "not an image"),
    ("truncated", "cannot be decoded"),
    ("empty", "is empty"),
])
def test_bad_image_is_exit_2_naming_row_and_file(images, tmp_path: Path, damage: str, words: str) -> None:
    folder, table, dense, ticket = images
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "images").symlink_to(folder / "images")
    rows = table.copy()
    if damage == "missing":
        rows.loc[7, "path"] = "images/nowhere.png"
    elif damage == "text":
        (broken / "notes.png").write_text("not a picture", encoding="utf-8")
        rows.loc[7, "path"] = "notes.png"
    elif damage == "truncated":
        data = (folder / table.loc[7, "path"]).read_bytes()
        (broken / "cut.png").write_bytes(data[: len(data) // 2])
        rows.loc[7, "path"] = "cut.png"
    else:
        rows.loc[7, "path"] = ""
    rows.to_csv(broken / "data.csv", index=False)
    run, out = _cli(broken, dense, ticket, tmp_path)
    assert run.code == 2, run.stdout + run.stderr
    assert "row 7" in run.stderr and words in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()


def test_an_image_too_large_to_decode_safely_is_refused(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image as PILImage

    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 is then over twice the limit
    inputs = ImageInputs(np.array([str(tmp_path / "big.png")], dtype=object), np.array([3]),
                         ImageProcessor.from_dict(PROCESSOR, source="t"), "path")
    with pytest.raises(InvalidInputError, match="row 3 .*too large to decode safely"):
        inputs.pixels()


def test_processor_that_does_not_fit_the_model_is_exit_2_before_any_work(images, tmp_path: Path) -> None:
    folder, _, dense, ticket = images
    gray = write_processor(tmp_path / "gray.json", {**PROCESSOR, "image_mean": [0.5], "image_std": [0.5],
                                                    "num_channels": 1})
    run, out = _cli(folder, dense, ticket, tmp_path, "--image-processor", str(gray))
    assert run.code == 2 and "cannot take the 1x8x8 images" in run.stderr and not out.exists()


def test_processor_without_a_fixed_size_is_exit_2_before_any_work(images, tmp_path: Path) -> None:
    folder, _, dense, ticket = images
    loose = write_processor(tmp_path / "loose.json", {**PROCESSOR, "size": {"shortest_edge": 8}})
    run, out = _cli(folder, dense, ticket, tmp_path, "--image-processor", str(loose))
    assert run.code == 2 and "crop_size" in run.stderr and not out.exists()


def test_image_model_without_processor_or_image_column(images, tmp_path: Path) -> None:
    folder, _, dense, ticket = images
    bare = tmp_path / "bare"
    cnn_bundles(bare, processor={})
    for name in ("dense", "ticket"):
        (bare / name / "preprocessor_config.json").unlink()
    run, _ = _cli(folder, bare / "dense", bare / "ticket", tmp_path)
    assert run.code == 2 and "--image-processor" in run.stderr
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(folder / "data.csv"),
                   "--target", "label", "--sensitive", "group", "--out", str(tmp_path / "x.html"), "--quiet"])
    assert run.code == 2 and "--image COL" in run.stderr


def test_huggingface_vit_audit_with_attention(tmp_path: Path) -> None:
    table = write_images(tmp_path, 60)
    table.to_csv(tmp_path / "data.csv", index=False)
    dense, ticket = huggingface_vit(tmp_path)
    result = ta.audit(dense=dense, ticket=ticket, data=tmp_path / "data.csv", image="path", target="label",
                      sensitive="group", seed=0, n_boot=100, analyses="metrics,attention")
    attention = result.to_dict()["attention"]
    assert [layer["heads"] for layer in attention["layers"]] == [2, 2]
    # Every patch and the class token are real keys: the entropy is normalised by log(5), computed directly here.
    model = transformers.ViTForImageClassification.from_pretrained(dense, attn_implementation="eager").double().eval()
    processor = ImageProcessor.from_file(dense / "preprocessor_config.json")
    pixels = np.stack([processor(Image.open(tmp_path / p)) for p in table["path"]])
    with torch.no_grad():
        maps = model(torch.as_tensor(pixels, dtype=torch.float64), output_attentions=True).attentions
    keys = (SIDE // 4) ** 2 + 1
    expected = [float((-(a * torch.log(a.clamp_min(1e-300))).sum(-1) / np.log(keys)).mean(dim=(0, 2))[h])
                for a in maps for h in range(2)]
    got = [h["dense"] for h in attention["heads"]]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_huggingface_resnet_runs_without_attention(tmp_path: Path) -> None:
    table = write_images(tmp_path, 40)
    table.to_csv(tmp_path / "data.csv", index=False)
    resnet = huggingface_resnet(tmp_path)
    result = ta.audit(dense=resnet, ticket=resnet, data=tmp_path / "data.csv", image="path", target="label",
                      sensitive="group", seed=0, n_boot=100, attribution_rows=10)
    assert "attention" not in result.results and "attributions" in result.results
    assert result.performance.overall.metrics["accuracy"].delta == 0


def test_attribution_maps_show_where_each_model_looks(tmp_path: Path) -> None:
    """Dense reads the top-left and bottom-right quadrants, the ticket only the bottom-right: the ticket's
    top-left regions get exactly zero attribution and the difference map is negative only there."""
    table = write_images(tmp_path, 60, mixed_sizes=False)
    model, mask = quadrant_models()
    processor = write_processor(tmp_path / "p.json", PROCESSOR)
    result = ta.audit(dense=model, ticket=mask.apply(model), data=table.assign(path=[str(tmp_path / p) for p in table["path"]]),
                      image="path", image_processor=processor, target="label", sensitive="group", seed=0, n_boot=100,
                      analyses="attributions", attribution_rows=30)
    section = result.to_dict()["attributions"]
    assert section["unit"] == "pixel" and section["map_grid"] == [SIDE, SIDE]
    overall = next(m for m in section["maps"] if m["group"] == "overall")
    dense, ticket, difference = (np.array(overall[k]) for k in ("dense", "ticket", "difference"))
    half = SIDE // 2
    assert np.all(ticket[:half, :half] == 0) and np.all(dense[:half, :half] > 0)
    assert np.all(dense[:half, half:] == 0) and np.all(dense[half:, :half] == 0)
    np.testing.assert_allclose(ticket[half:, half:], dense[half:, half:], rtol=1e-6)
    assert np.all(difference[:half, :half] < 0) and np.all(difference[half:, half:] == pytest.approx(0, abs=1e-9))
    assert {g["group"] for g in section["groups"]} == {"group=a", "group=b"}
    for group in [section["overall"], *section["groups"]]:
        low, high = group["top_overlap_ci"]
        assert 0 <= low <= group["top_overlap"] <= high <= 1
    assert len(section["differing"]) > 0 and np.array(section["differing"][0]["dense_map"]).shape == (SIDE, SIDE)


def test_text_only_methods_are_refused_for_images(images) -> None:
    folder, _, dense, ticket = images
    with pytest.raises(InvalidInputError, match="cannot explain image models"):
        _audit(dense, ticket, folder / "data.csv", analyses="attributions", attribution_method="deeplift")


def test_image_report_renders_the_maps(images, tmp_path: Path) -> None:
    folder, _, dense, ticket = images
    out = tmp_path / "r.html"
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(folder / "data.csv"),
                   "--image", "path", "--target", "label", "--sensitive", "group", "--seed", "0", "--n-boot", "100",
                   "--attribution-rows", "20", "--out", str(out), "--json", str(tmp_path / "r.json"), "--quiet"])
    assert run.code in (0, 1), run.stderr
    html = out.read_text(encoding="utf-8")
    assert "Mean attribution maps per group" in html and html.count("<svg role=\"img\" aria-label=\"dense map") >= 3
    assert "Images whose explanations differ most" in html


def test_png_decoding_does_not_need_torchvision() -> None:
    import sys

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    ImageInputs(np.array([buffer.getvalue()], dtype=object), np.arange(1), ImageProcessor.from_dict(PROCESSOR, source="t"),
                "x").pixels()
    assert "torchvision" not in sys.modules


def test_thumbnails_are_embedded_unless_refused(images, tmp_path: Path) -> None:
    folder, _, dense, ticket = images
    options = {"analyses": "metrics,disagreement,attributions", "attribution_rows": 20}
    shown = _audit(dense, ticket, folder / "data.csv", **options).to_dict()
    hidden = _audit(dense, ticket, folder / "data.csv", thumbnails=False, **options).to_dict()
    examples = shown["disagreement"]["examples"]
    assert examples and all(e["thumbnail"].startswith("data:image/png;base64,") for e in examples)
    assert all(d["thumbnail"].startswith("data:image/png;base64,") for d in shown["attributions"]["differing"])
    text = json.dumps(hidden)
    assert "data:image" not in text
    assert [{k: v for k, v in e.items() if k != "thumbnail"} for e in examples] == hidden["disagreement"]["examples"]
    decoded = Image.open(io.BytesIO(__import__("base64").b64decode(examples[0]["thumbnail"].split(",", 1)[1])))
    assert max(decoded.size) <= 64


def _parts(folder: Path, table: pd.DataFrame) -> Path:
    """The table as 3 Parquet files in ``folder/parts`` (image paths relative to that directory)."""
    parts = folder / "parts"
    parts.mkdir(exist_ok=True)
    moved = table.assign(path=["../" + p for p in table["path"]])
    for i, chunk in enumerate(np.array_split(np.arange(len(moved)), 3)):
        moved.iloc[chunk].to_parquet(parts / f"part-{i}.parquet")
    return parts


def test_a_directory_of_parquet_files_is_read_fragment_by_fragment(images) -> None:
    folder, table, dense, ticket = images
    options = {"analyses": "metrics,disagreement,attributions", "attribution_rows": 20}
    whole = _audit(dense, ticket, folder / "data.csv", **options).to_dict()
    parts = _audit(dense, ticket, _parts(folder, table), **options).to_dict()
    for key in ("performance", "subgroups", "checks", "disagreement", "attributions"):
        assert parts[key] == whole[key], key


@pytest.mark.slow
def test_ray_engine_gives_the_same_image_audit(images) -> None:
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    folder, table, dense, ticket = images
    data = str(_parts(folder, table))
    options = {"analyses": "metrics,disagreement,attributions", "attribution_rows": 20}
    local = _audit(dense, ticket, data, **options).to_dict()
    remote = _audit(dense, ticket, data, engine="ray", num_workers=2, **options).to_dict()
    assert json.dumps(remote, sort_keys=True) == json.dumps(local, sort_keys=True)


def test_pruned_cnn_candidates_are_saved_as_measured(images, tmp_path: Path) -> None:
    """``ticketaudit prune --image``: every method (filter pruning as the structured one) and fine-tuning on a
    training table in another folder; each saved candidate, audited as it is, reproduces its reported numbers."""
    from ticketaudit.prune import prune, write_prune
    from ticketaudit.tickets import load_ticket
    from ticketaudit.tickets import load_dense as load

    folder, _, dense, _ = images
    train = tmp_path / "train"
    write_images(train, 120, seed=5).to_csv(train / "train.csv", index=False)
    result = prune(dense=dense, data=folder / "data.csv", train_data=train / "train.csv", image="path",
                   target="label", sensitive="group", sparsity=0.6, methods="all", recover="finetune", epochs=1,
                   n_boot=100, seed=0)
    out = tmp_path / "out"
    write_prune(result, out)
    reported = json.loads((out / "alternatives.json").read_text())["alternatives"]["candidates"]
    saved = [c for c in reported if c["saved_to"] is not None]
    assert {c["method"] for c in saved} == {"global-magnitude", "layerwise-magnitude", "group-balanced", "worst-group",
                                           "structured"}
    for candidate in saved:
        assert (Path(candidate["saved_to"]) / "preprocessor_config.json").is_file()
        audit = _audit(dense, candidate["saved_to"], folder / "data.csv", analyses="metrics")
        assert audit.performance.overall.metrics["accuracy"].ticket == pytest.approx(candidate["accuracy"], abs=1e-9)
        groups = {g.group: g.metrics["accuracy"].ticket for g in audit.performance.subgroups}
        assert groups == pytest.approx(candidate["group_accuracy"], abs=1e-9)
    structured = next(c for c in saved if c["method"] == "structured")
    mask = load_ticket(structured["saved_to"], dense=load(dense)).mask
    chain = ["features.0.weight", "features.3.weight", "classifier.weight"]
    pruned_filters = 0
    for first, second in zip(chain[:-1], chain[1:]):
        dropped = [f for f in range(mask[first].shape[0]) if not mask[first][f].any()]
        assert all(not mask[second][:, f].any() for f in dropped)  # a filter goes with the channel reading it
        pruned_filters += len(dropped)
    assert pruned_filters > 0
    inputs_alive = torch.ones(mask[chain[0]].shape[1], dtype=torch.bool)
    for name in chain[:-1]:  # whole filters only, never single weights: a kept filter reads every live channel
        for f in range(mask[name].shape[0]):
            assert bool(mask[name][f][inputs_alive].all()) or not mask[name][f].any()
        inputs_alive = mask[name].flatten(1).any(dim=1)


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_pruned_huggingface_image_candidates_are_saved_as_measured(kind: str, tmp_path: Path) -> None:
    """``prune --image`` on a Hugging Face image directory: each candidate is saved as a Hugging Face directory
    (config and image processor copied, its own fine-tuned weights, its mask) that, audited as it is, scores
    what alternatives.json says; the weights saved are the fine-tuned ones, not the dense model x the mask."""
    from safetensors.torch import load_file

    from ticketaudit.prune import prune, write_prune

    def weights_of(folder: Path) -> dict[str, torch.Tensor]:  # by the module's own names (the file may use others)
        return transformers.AutoModelForImageClassification.from_pretrained(folder).state_dict()

    table = write_images(tmp_path, 60)
    table.to_csv(tmp_path / "data.csv", index=False)
    train = tmp_path / "train"
    write_images(train, 90, seed=5).to_csv(train / "train.csv", index=False)
    dense = huggingface_vit(tmp_path)[0] if kind == "vit" else huggingface_resnet(tmp_path)
    result = prune(dense=dense, data=tmp_path / "data.csv", train_data=train / "train.csv", image="path",
                   target="label", sensitive="group", sparsity=0.6, methods="all", recover="finetune", epochs=1,
                   n_boot=100, seed=0)
    out = tmp_path / "out"
    write_prune(result, out)
    document = json.loads((out / "alternatives.json").read_text())["alternatives"]
    saved = [c for c in document["candidates"] if c["saved_to"] is not None]
    assert {c["method"] for c in saved} == {"global-magnitude", "layerwise-magnitude", "group-balanced", "worst-group"}
    assert any("structured pruning was skipped" in note for note in document["notes"])
    dense_weights = weights_of(dense)
    for candidate in saved:
        folder = Path(candidate["saved_to"])
        assert {"config.json", "model.safetensors", "mask.safetensors", "preprocessor_config.json"} <= \
            {p.name for p in folder.iterdir()}
        audit = ta.audit(dense=dense, ticket=folder, data=tmp_path / "data.csv", image="path", target="label",
                         sensitive="group", n_boot=100, analyses="metrics")
        assert audit.ticket.format == "huggingface"
        assert audit.performance.overall.metrics["accuracy"].ticket == pytest.approx(candidate["accuracy"], abs=1e-9)
        groups = {g.group: g.metrics["accuracy"].ticket for g in audit.performance.subgroups}
        assert groups == pytest.approx(candidate["group_accuracy"], abs=1e-9)
        assert audit.ticket.sparsity == pytest.approx(candidate["sparsity"], abs=1e-3)
        weights, mask = weights_of(folder), load_file(str(folder / "mask.safetensors"))
        assert all(not weights[name][m == 0].any() for name, m in mask.items())  # pruned weights stay zero
        assert any(not torch.equal(weights[name], dense_weights[name] * m) for name, m in mask.items())  # fine-tuned


@pytest.mark.parametrize("kind", ["same path", "symlink", "hard link"])
@pytest.mark.parametrize("output", ["--out", "--json", "--model-card"])
def test_no_output_is_an_image_the_data_names(images, kind: str, output: str, tmp_path: Path) -> None:
    """Every image the table names is an input: an output resolving to one (by path, symlink or hard link) is
    exit 2 before any model runs, and the image is untouched."""
    folder, table, dense, ticket = images
    victim = folder / table.loc[5, "path"]
    target = {"same path": victim, "symlink": tmp_path / "out.link", "hard link": tmp_path / "out.hard"}[kind]
    if kind == "symlink":
        target.symlink_to(victim)
    elif kind == "hard link":
        target.hardlink_to(victim)
    before = victim.read_bytes()
    extra = [output, str(target)] if output != "--out" else []
    run, out = _cli(folder, dense, ticket, tmp_path, *extra)
    if output == "--out":
        run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(folder / "data.csv"),
                       "--image", "path", "--target", "label", "--sensitive", "group", "--analyses", "metrics",
                       "--out", str(target), "--quiet"])
    assert run.code == 2 and "never writes over its inputs" in run.stderr, run.stderr
    assert "an image the data names" in run.stderr
    assert victim.read_bytes() == before


@pytest.mark.parametrize("processor_kind", ["cnn bundle", "huggingface vit"])
def test_model_cards_name_the_image_task(images, processor_kind: str, tmp_path: Path) -> None:
    folder, table, dense, ticket = images
    if processor_kind == "huggingface vit":
        dense, ticket = huggingface_vit(tmp_path)
    run, out = _cli(folder, dense, ticket, tmp_path, "--model-card", str(tmp_path / "card.md"))
    assert run.code in (0, 1), run.stderr
    card = (tmp_path / "card.md").read_text()
    assert "type: image-classification" in card and "text-classification" not in card
    assert "tabular-classification" not in card
