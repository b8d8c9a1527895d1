"""Finding text the first detector pass misses, and not looking where there is none:
stroke cues before the detector, second looks on small lines and inside anatomy blobs,
static annotations carried across frames. Real OCR engine throughout."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from phigate.pixels import OcrEngine, PixelRules, clean_pixels
from phigate.pixels.cues import MIN_STROKE_CONTRAST, line_extent, text_areas
from phigate.pixels.engines import TextRegion
from phigate.pixels.pixeldata import (
    DISPLAY_TOLERANCE,
    display_window,
    load_pixels,
    render_frame,
)
from phigate.pixels.refine import complete_lines
from phigate.pixels.rules import Box
from phigate.pixels.scan import FrameScanner, ReadingMemo, ScanReport, _areas_to_rescan
from phigate.pixels.validation import _font, _text_mask, generate_cases

from .helpers import blanked, burn, changed_share, pixels4d, same_outside


def _phantom_ct() -> Dataset:
    """A text-free CT slice: air, a soft-tissue body with a denser organ, gentle noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:512, 0:512]
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 170.0) ** 2 < 1
    organ = ((yy - 230) / 60.0) ** 2 + ((xx - 300) / 45.0) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0) + np.where(organ, 30.0, 0.0)
    hu += rng.normal(0.0, 6.0, hu.shape)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.SOPClassUID = "CT", "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.set_pixel_data(hu.astype(np.int16), "MONOCHROME2", 16, generate_instance_uid=False)
    return ds


def test_text_free_ct_slice_skips_detection_and_recognition(engine: OcrEngine) -> None:
    ds = _phantom_ct()
    before = pixels4d(ds)
    outcome = clean_pixels(ds, PixelRules(), {"PatientName": "DOE^JOHN"}, engine=engine)
    assert outcome.detector_passes == 0 and outcome.recognitions == 0
    assert not outcome.text_found and not outcome.modified
    assert outcome.fully_scanned and ds.BurnedInAnnotation == "NO"
    assert np.array_equal(before, pixels4d(ds))


def test_text_free_anatomy_is_read_nowhere(engine: OcrEngine) -> None:
    """A real head CT: strokes of bone make the detector look, but nothing is read."""
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    outcome = clean_pixels(ds, PixelRules(), [], engine=engine)
    assert outcome.recognitions == 0 and not outcome.text_found and not outcome.modified


def test_the_same_slice_with_text_is_not_skipped(engine: OcrEngine) -> None:
    ds = _phantom_ct()
    arr = ds.pixel_array.copy()
    box = burn(arr, "DOE^JOHN 1987-05-06", 20, 470, 10, 300)  # faint: 300 HU over air
    ds.PixelData = arr.astype("<i2").tobytes()
    before = pixels4d(ds)
    outcome = clean_pixels(ds, PixelRules(), {"PatientName": "DOE^JOHN"}, engine=engine)
    assert outcome.detector_passes > 0
    assert blanked(before, pixels4d(ds), box)


def test_stroke_cues_cover_every_drawn_label() -> None:
    """The cheap look never narrows the detector's view past a piece of text."""
    for case in generate_cases(per_modality=2, seed=3):
        image = load_pixels(case.dataset)
        window = display_window(image)
        for frame in range(image.count):
            areas = text_areas(render_frame(case.dataset, image, frame, window))
            if areas is None:
                continue
            for label in (lb for lb in case.labels if lb.frame == frame):
                assert any(_inside(label.box, area) for area in areas), (case.name, label)


def test_partly_found_small_line_is_completed(engine: OcrEngine) -> None:
    image = np.zeros((120, 320, 3), dtype=np.uint8)
    box = burn(image, "David Johnson 1987-05-06", 40, 50, 10, (150, 150, 150))
    first_word = TextRegion((box[0] - 2, box[1] - 3, 32, box[3] + 6), 0.6)
    lines = complete_lines(engine, image, [first_word])
    assert any(_inside(box, r.box) for r in lines)


def test_text_over_anatomy_is_found_inside_the_detector_blob(engine: OcrEngine) -> None:
    """On this head CT the first pass returns one blob the size of the frame; text inside
    the skull is found by second looks at line-shaped strokes within it."""
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    arr = ds.pixel_array.copy()
    box = burn(arr, "MRN 55512345", 200, 250, 10, int(arr.max()))
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    before = pixels4d(ds)
    outcome = clean_pixels(ds, PixelRules(), [], engine=engine)
    after = pixels4d(ds)
    assert blanked(before, after, box)
    assert same_outside(before, after, [f.box for f in outcome.findings if f.box is not None])


def _us_cine(frames: np.ndarray) -> Dataset:
    """An 8-bit grey ultrasound multi-frame instance holding ``frames``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.SOPClassUID = "US", "1.2.840.10008.5.1.4.1.1.3.1"
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.set_pixel_data(frames, "MONOCHROME2", 8, generate_instance_uid=False)
    return ds


def test_static_annotation_found_on_one_frame_is_cleared_on_all(engine: OcrEngine) -> None:
    """A cine loop with moving speckle and a fixed faint caption: every frame loses it."""
    rng = np.random.default_rng(11)
    frames = rng.integers(20, 90, size=(4, 240, 320), dtype=np.uint8)
    boxes = [burn(frames[f], "SMITH^ANNA", 60, 200, 9, 140) for f in range(4)]
    ds = _us_cine(frames)
    before = pixels4d(ds)
    clean_pixels(ds, PixelRules(), {"PatientName": "SMITH^ANNA"}, engine=engine)
    after = pixels4d(ds)
    assert all(blanked(before, after, box, f) for f, box in enumerate(boxes))


def _inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def _cine_with_caption_band(frames: int) -> np.ndarray:
    """Speckle that moves on every frame above a flat dark band where captions go."""
    rng = np.random.default_rng(5)
    stack = np.zeros((frames, 240, 320), dtype=np.uint8)
    stack[:, :180] = rng.integers(20, 120, size=(frames, 180, 320), dtype=np.uint8)
    return stack


def _scan_all(engine: OcrEngine, stack: np.ndarray) -> ScanReport:
    scanner = FrameScanner(
        stack,
        lambda i: np.repeat(stack[i][..., np.newaxis], 3, axis=2),
        engine,
        ReadingMemo(),
        lambda _i: [],
        max_side=1024,
    )
    scanner.scan(range(len(stack)))
    return scanner.report


def _frames_covering(report: ScanReport, box: tuple[int, int, int, int]) -> set[int]:
    return {p.frame for p in report.pieces if _overlap(p.box, box)}


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_a_caption_that_stays_put_is_read_once_while_the_picture_moves(
    engine: OcrEngine,
) -> None:
    """Three quarters of every frame change, so each later frame is looked at whole; the
    caption under none of the change keeps its first reading and is not found again."""
    stack = _cine_with_caption_band(4)
    boxes = [burn(stack[f], "SMITH ANNA 1234567", 20, 200, 14, 220) for f in range(4)]
    box = boxes[0]
    report = _scan_all(engine, stack)
    assert _frames_covering(report, box) == {0, 1, 2, 3}
    assert report.fresh_pieces == 0


def test_a_caption_that_appears_mid_loop_is_found_where_it_appears_and_after(
    engine: OcrEngine,
) -> None:
    stack = _cine_with_caption_band(4)
    boxes = [burn(stack[f], "DOE JANE 7654321", 20, 200, 14, 220) for f in (2, 3)]
    box = boxes[0]
    report = _scan_all(engine, stack)
    assert _frames_covering(report, box) == {2, 3}
    fresh_on_frame_2 = [p for p in report.pieces if p.frame == 2 and _overlap(p.box, box)]
    assert report.fresh_pieces == len(fresh_on_frame_2)  # frame 3 reuses frame 2's reading


def test_a_caption_that_blinks_off_for_one_frame_is_found_when_it_comes_back(
    engine: OcrEngine,
) -> None:
    """Frame 1 lacks the caption, so its reading is dropped; on frame 2 the pixels match
    the reference frame again, but not frame 1, the last one read."""
    stack = _cine_with_caption_band(5)
    boxes = [burn(stack[f], "ZORBEK QUELL 1987", 20, 200, 14, 220) for f in (0, 2, 3, 4)]
    report = _scan_all(engine, stack)
    assert _frames_covering(report, boxes[0]) == {0, 2, 3, 4}


def test_faint_text_that_appears_later_counts_as_a_change(engine: OcrEngine) -> None:
    """A caption 22 grey levels over a flat band, from frame 2 on: within what a flicker
    could be under the old tolerance, and so never looked at."""
    stack = _cine_with_caption_band(4)
    stack[:, 180:] = 60
    boxes = [burn(stack[f], "SMITH ANNA 1987", 20, 195, 16, 82) for f in (2, 3)]
    ds = _us_cine(stack)
    before = pixels4d(ds)
    clean_pixels(ds, PixelRules(), {"PatientName": "SMITH^ANNA"}, engine=engine)
    after = pixels4d(ds)
    assert all(blanked(before, after, boxes[0], f) for f in (2, 3))


def test_any_stroke_the_cues_would_see_counts_as_a_change_between_frames() -> None:
    assert DISPLAY_TOLERANCE < MIN_STROKE_CONTRAST


@pytest.mark.parametrize(
    ("label_text", "gap"),
    [("MRN:", 12), ("MRN:", 54), ("Patient ID:", 12)],  # two spaces on, or a tab stop
)
def test_a_value_that_appears_after_a_label_read_earlier_is_judged_with_it(
    engine: OcrEngine, label_text: str, gap: int
) -> None:
    """The label stays put and keeps its reading; "0042" alone looks like a count."""
    stack = _cine_with_caption_band(4)
    label = [burn(frame, label_text, 20, 200, 14, 220) for frame in stack][-1]
    x = label[0] + label[2] + gap
    values = [burn(stack[f], "0042", x, 200, 14, 220) for f in (2, 3)]
    ds = _us_cine(stack)
    before = pixels4d(ds)
    clean_pixels(ds, PixelRules(), {"PatientName": "SMITH^ANNA"}, engine=engine)
    after = pixels4d(ds)
    assert all(blanked(before, after, values[0], f) for f in (2, 3))


def test_text_on_the_sampled_frames_of_a_multi_frame_mr_makes_every_frame_read(
    engine: OcrEngine,
) -> None:
    """As text in a sampled series makes the series read: the samples' caption says the
    device burns text in, so a name on a frame between the samples is looked for."""
    rng = np.random.default_rng(3)
    stack = np.full((6, 256, 256), 10, dtype=np.uint8)
    stack[:, 40:200, 40:200] = rng.integers(40, 140, size=(6, 160, 160), dtype=np.uint8)
    for frame in stack:
        burn(frame, "SE 4 IM 1", 10, 220, 14, 220)
    name = burn(stack[1], "SMITH ANNA", 120, 10, 14, 220)
    ds = _us_cine(stack)
    ds.Modality, ds.SOPClassUID = "MR", "1.2.840.10008.5.1.4.1.1.4.1"
    before = pixels4d(ds)
    outcome = clean_pixels(ds, PixelRules(), {"PatientName": "SMITH^ANNA"}, engine=engine)
    assert blanked(before, pixels4d(ds), name, 1)
    assert outcome.fully_scanned


def test_faint_small_names_on_noise_are_found_where_they_leave_no_trace(
    engine: OcrEngine,
) -> None:
    """8-9 px text at a fifth of the grey range over noise of sd 10: the detector's text map
    over it is fainter than over the noise itself, so only the look at twice the size over
    the grainy part of the frame finds it."""
    rng = np.random.default_rng(1007)
    image = 60.0 + rng.normal(0, 10, (512, 512))
    burn(image, "ABDOMEN 3.5 MHz", 12, 10, 18, 255)
    names = [
        _burn_faint(image, "Ahmed Nguyen", "DejaVuSerif.ttf", 8, 151, 100),
        _burn_faint(image, "NGUYEN^AHMED", "DejaVuSansMono.ttf", 9, 40, 200),
    ]
    ds = _us_cine(np.clip(np.rint(image), 0, 255).astype(np.uint8)[np.newaxis])
    ds.Modality, ds.SOPClassUID = "OT", "1.2.840.10008.5.1.4.1.1.7"
    before = pixels4d(ds)
    clean_pixels(ds, PixelRules(), {"PatientName": "NGUYEN^AHMED"}, engine=engine)
    assert all(changed_share(before, pixels4d(ds), name) >= 0.9 for name in names)


def _burn_faint(image: np.ndarray, text: str, font: str, size: int, x: int, y: int) -> Box:
    """Text a fifth of the way from the median under it to white; returns its box."""
    mask = _text_mask(text, _font(font, size))
    h, w = mask.shape
    median = float(np.median(image[y : y + h, x : x + w]))
    image[y : y + h, x : x + w][mask] = median + 0.2 * (255 - median)
    return (x, y, w, h)


def _faint_date_case() -> tuple[Dataset, tuple[int, int, int, int]]:
    """A generated CT whose 10 px date at 35 % contrast the first pass does not call a line."""
    case = list(generate_cases(["CT"], per_modality=8, seed=1))[7]
    [date] = [lb for lb in case.labels if lb.entity == "date"]
    assert (date.size, date.contrast) == (10, 0.35)
    return case.dataset, date.box


def test_a_faint_small_line_the_first_pass_drops_leaves_a_trace(engine: OcrEngine) -> None:
    ds, box = _faint_date_case()
    image = load_pixels(ds)
    frame = render_frame(ds, image, 0, display_window(image))
    lines, traces = engine.detect_with_hints(frame)
    assert lines and traces is not None
    assert not any(_overlap(line.box, box) for line in lines)
    assert any(_overlap(trace, box) for trace in traces)
    assert not any(_inside(trace, line.box) for trace in traces for line in lines)


def test_a_faint_small_date_is_found_by_a_second_look_at_its_trace(engine: OcrEngine) -> None:
    ds, box = _faint_date_case()
    before = pixels4d(ds)
    clean_pixels(ds, PixelRules(), {"PatientName": "SMITH^KAREN"}, engine=engine)
    assert blanked(before, pixels4d(ds), box)


def test_a_change_over_most_of_a_frame_is_looked_at_in_one_piece_not_the_whole_frame() -> None:
    changed = np.zeros((600, 800), dtype=bool)
    changed[40:480, 60:700] = True  # the moving picture
    changed[540:560, 100:300] = True  # a trace below it
    [area] = _areas_to_rescan(changed, [])
    x, y, w, h = area
    assert changed[y : y + h, x : x + w].sum() == changed.sum()  # every change inside
    assert (w, h) != (800, 600) and w * h < 0.9 * 800 * 600  # the still border left out


def test_a_line_read_in_part_is_cleared_to_the_end_of_its_strokes() -> None:
    image = np.zeros((60, 300, 3), dtype=np.uint8)
    x, y, w, h = burn(image, "Tel 617-555-0142", 10, 20, 12, 200)
    left_half, right_half = (x, y, w // 2, h), (x + w // 2, y, w - w // 2, h)
    for part in (left_half, right_half):
        gx, _, gw, _ = line_extent(image, part)
        # to the glyphs' stems (a "T" bar's ends are thinner than a stroke counts)
        assert gx <= x + h // 2 and gx + gw >= x + w - h // 2


def test_a_line_grows_up_to_the_text_kept_beside_it_and_no_further() -> None:
    image = np.zeros((60, 300, 3), dtype=np.uint8)
    x, y, w, h = burn(image, "Tel 617-555-0142", 10, 20, 12, 200)
    kept = (x + w - 20, y, 20, h)
    grown = line_extent(image, (x, y, w // 2, h), [kept])
    assert grown[0] + grown[2] <= kept[0]
    alone = burn(image, "L", x + w + 40, y, 12, 200)  # a marker past a wide gap
    gx, _, gw, _ = line_extent(image, (x, y, w, h))
    assert gx + gw < alone[0]


def test_a_line_is_not_grown_into_noise() -> None:
    """On noise strokes are everywhere, above and below the line too: nothing says where
    the text ends, so the box stays as found."""
    rng = np.random.default_rng(0)
    image = np.clip(60 + rng.normal(0, 12, (60, 300, 3)), 0, 255).astype(np.uint8)
    assert line_extent(image, (100, 20, 40, 12)) == (100, 20, 40, 12)


def test_a_line_is_not_grown_along_a_scale_bar_beside_it() -> None:
    image = np.zeros((60, 300, 3), dtype=np.uint8)
    x, y, w, h = burn(image, "SMITH ANNA", 10, 20, 12, 200)
    image[y + h // 2, x + w + 6 : x + w + 120] = 200  # a 1-pixel bar on the line
    gx, _, gw, _ = line_extent(image, (x, y, w, h))
    assert gx + gw <= x + w + 6
