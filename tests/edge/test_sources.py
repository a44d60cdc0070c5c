"""Frame sources on real data made here: an mp4, an image folder, an HTTP MJPEG stream, the emulator, picamera2."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import sources
from edge.image import convert_to_rgb
from edge.mjpeg import MjpegServer
from tests.edge import fake_picamera2
from tests.edge.dead_source import NeverOpens

COLORS_RGB = [(220, 30, 30), (30, 200, 40), (20, 40, 230), (240, 240, 20)]


def _read_all(source: sources.FrameSource, limit: int = 1000) -> list[sources.Frame]:
    frames = []
    with source:
        while len(frames) < limit and (frame := source.read()) is not None:
            frames.append(frame)
    return frames


def _assert_rgb_close(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 20) -> None:
    center = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
    assert np.all(np.abs(center - np.array(rgb)) <= tolerance), f"center pixel {center} != RGB {rgb}"


@pytest.fixture
def mp4_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    assert writer.isOpened()
    for k in range(12):
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[:] = COLORS_RGB[k % 4][::-1]  # VideoWriter takes BGR
        writer.write(frame)
    writer.release()
    return path


def test_video_file_frames_are_rgb_and_stream_ends(mp4_file: Path) -> None:
    source = sources.open_source(str(mp4_file))
    assert isinstance(source, sources.OpenCVSource) and not source.live
    frames = _read_all(source)
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    for k, frame in enumerate(frames):
        assert frame.image.shape == (64, 96, 3) and frame.image.dtype == np.uint8
        _assert_rgb_close(frame.image, COLORS_RGB[k % 4])
        assert frame.ground_truth is None


@pytest.mark.parametrize("decode_threads", [1, 2, None])
def test_video_file_frames_are_new_arrays_whatever_the_decoder_threads(mp4_file: Path, decode_threads) -> None:
    """The source decodes into one reused buffer: every frame it hands out must still be its own array."""
    source = sources.OpenCVSource(str(mp4_file), decode_threads=decode_threads)
    frames = _read_all(source)
    assert len(frames) == 12
    assert not any(np.shares_memory(a.image, b.image) for a, b in zip(frames, frames[1:], strict=False))
    for k, frame in enumerate(frames):
        _assert_rgb_close(frame.image, COLORS_RGB[k % 4])
    assert source.describe()["decode_threads"] == decode_threads


def test_video_file_decode_threads_must_be_positive(mp4_file: Path) -> None:
    with pytest.raises(ValueError, match="decode_threads must be >= 1 or None, got 0"):
        sources.OpenCVSource(str(mp4_file), decode_threads=0)


def test_video_file_loop_restarts(mp4_file: Path) -> None:
    frames = _read_all(sources.open_source(str(mp4_file), loop=True), limit=30)
    assert len(frames) == 30
    _assert_rgb_close(frames[12].image, COLORS_RGB[0])


def test_image_folder_handles_gray_rgba_and_corrupt_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    color = np.zeros((40, 50, 3), np.uint8)
    color[:] = COLORS_RGB[0][::-1]
    cv2.imwrite(str(folder / "a.png"), color)
    cv2.imwrite(str(folder / "b.png"), np.full((30, 20), 128, np.uint8))
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[:] = (*COLORS_RGB[2][::-1], 255)
    cv2.imwrite(str(folder / "c.png"), rgba)
    (folder / "d.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING):
        frames = _read_all(sources.open_source(str(folder)))
    assert [f.image.shape for f in frames] == [(40, 50, 3), (30, 20, 3), (10, 12, 3)]
    _assert_rgb_close(frames[0].image, COLORS_RGB[0], 0)
    _assert_rgb_close(frames[1].image, (128, 128, 128), 0)
    _assert_rgb_close(frames[2].image, COLORS_RGB[2], 0)
    assert "d.jpg" in caplog.text


def test_empty_folder_and_unknown_source_errors(tmp_path: Path) -> None:
    with pytest.raises(sources.SourceError, match="no images"):
        sources.open_source(str(tmp_path)).open()
    with pytest.raises(sources.SourceError, match="valid: synthetic, picamera2"):
        sources.open_source("no-such-thing")


def test_http_mjpeg_stream_source() -> None:
    with MjpegServer("127.0.0.1", 0) as server:
        stop = threading.Event()

        def publish() -> None:
            k = 0
            while not stop.is_set():
                frame = np.zeros((48, 64, 3), np.uint8)
                frame[:] = COLORS_RGB[1][::-1]
                server.publish(cv2.imencode(".jpg", frame)[1].tobytes())
                k += 1
                time.sleep(0.02)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        try:
            source = sources.open_source(f"http://127.0.0.1:{server.port}/stream", reconnect=False)
            assert source.live
            frames = _read_all(source, limit=5)
        finally:
            stop.set()
            thread.join()
    assert len(frames) == 5
    for frame in frames:
        assert frame.image.shape == (48, 64, 3)
        _assert_rgb_close(frame.image, COLORS_RGB[1])


def test_synthetic_source_ground_truth_motion_and_determinism() -> None:
    def run(seed: int) -> list[sources.Frame]:
        return _read_all(sources.SyntheticSource((160, 120), paced=False, seed=seed, num_frames=6))

    frames = run(3)
    assert len(frames) == 6
    for frame in frames:
        assert frame.image.shape == (120, 160, 3) and frame.image.dtype == np.uint8
        gt = frame.ground_truth
        assert gt is not None and gt.boxes.shape[1] == 4 and len(gt.boxes) == len(gt.class_ids) >= 1
        assert gt.difficult is not None and gt.difficult.dtype == bool and len(gt.difficult) == len(gt.boxes)
        assert np.all((gt.boxes >= 0) & (gt.boxes <= 1))
        assert np.all(gt.boxes[:, 2:] > gt.boxes[:, :2])
    assert not np.array_equal(frames[0].image, frames[1].image), "objects should move between frames"
    again = run(3)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))
    assert not np.array_equal(run(4)[0].image, frames[0].image)


def test_synthetic_source_changes_background_between_scenes() -> None:
    frames = _read_all(sources.SyntheticSource((64, 48), paced=False, num_frames=5, scene_frames=2))
    corners = [tuple(f.image[0, 0]) for f in frames]
    assert corners[0] != corners[2] or corners[2] != corners[4]


def test_synthetic_source_is_paced_like_a_camera() -> None:
    source = sources.SyntheticSource((64, 48), fps=50.0, paced=True, num_frames=11)
    start = time.monotonic()
    frames = _read_all(source)
    elapsed = time.monotonic() - start
    assert len(frames) == 11
    assert elapsed >= 10 / 50.0 * 0.9
    assert source.live


@pytest.fixture
def picamera(monkeypatch: pytest.MonkeyPatch):
    fake_picamera2.reset()
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)
    yield fake_picamera2
    fake_picamera2.reset()


def test_picamera2_source_converts_bgr_memory_to_rgb(picamera) -> None:
    source = sources.open_source("picamera2", resolution=(64, 48), reconnect=False)
    frames = _read_all(source, limit=3)
    camera = picamera.instances[-1]
    assert camera.camera_config["main"]["format"] == "RGB888" and camera.camera_config["main"]["size"] == (64, 48)
    assert camera.closed and not camera.started
    assert len(frames) == 3
    assert frames[0].image.shape == (48, 64, 3)
    _assert_rgb_close(frames[0].image[-4:], fake_picamera2.SCENE_RGB, 0)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 3]
    assert frames[0].inference_image is None


@pytest.mark.parametrize("lores_format", ["YUV420", "RGB888", "BGR888", "XRGB8888", "XBGR8888"])
def test_picamera2_lores_stream_feeds_inference(picamera, lores_format: str) -> None:
    # 100 px wide: YUV420 rows are padded to a 128-byte stride, the padding must not leak into the colours
    source = sources.Picamera2Source(resolution=(128, 96), lores=(100, 56), lores_format=lores_format)
    frames = _read_all(source, limit=2)
    lores_config = picamera.instances[-1].camera_config["lores"]
    assert lores_config["format"] == lores_format and lores_config["size"] == (100, 56)
    lores = frames[0].inference_image
    assert lores is not None and lores.shape == (56, 100, 3) and lores.dtype == np.uint8
    tolerance = 6 if lores_format == "YUV420" else 0
    for row in (lores[-3:], lores[:3]):  # background above and below the marker, across the whole width
        assert np.all(np.abs(row.astype(int) - np.array(fake_picamera2.SCENE_RGB)) <= tolerance), lores_format


def test_picamera2_takes_one_request_per_frame_and_releases_it(picamera) -> None:
    source = sources.Picamera2Source(resolution=(128, 96), lores=(64, 48))
    frames = _read_all(source, limit=12)  # more frames than the 4 buffers of a preview configuration
    camera = picamera.instances[-1]
    assert len(frames) == 12
    assert camera.frames == 12, "one camera frame per Frame: main and lores from a single request"
    assert camera.held == 0 and camera.max_held == 1
    assert [int(f.image[0, 0, 0]) for f in frames] == list(range(1, 13))


def test_picamera2_releases_the_request_when_reading_it_fails(picamera, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, name: str) -> np.ndarray:
        raise RuntimeError("Stream 'lores' is not defined")

    source = sources.Picamera2Source(resolution=(64, 48), lores=(32, 24))
    with source:
        monkeypatch.setattr(picamera.CompletedRequest, "make_array", broken)
        with pytest.raises(sources.SourceUnavailable, match="picamera2 camera 0: capture failed"):
            source.read()
        assert picamera.instances[-1].held == 0


def test_fake_picamera2_is_as_strict_as_the_camera(picamera) -> None:
    camera = picamera.Picamera2(0)
    camera.configure(camera.create_preview_configuration(main={"size": (64, 48), "format": "RGB888"}))
    camera.start()
    request = camera.capture_request()
    assert request.make_array("main").shape == (48, 64, 3)
    assert set(request.get_metadata()) >= {"SensorTimestamp"}
    request.release()
    with pytest.raises(RuntimeError, match="Stream 'main' is not defined"):
        request.make_array("main")
    with pytest.raises(RuntimeError, match="negative ref_count"):
        request.release()
    camera.capture_array("main")
    camera.capture_array("main")
    assert camera.frames == 3  # every capture is a new camera frame
    held = [camera.capture_request() for _ in range(4)]
    with pytest.raises(RuntimeError, match="buffers are held"):
        camera.capture_request()
    held[0].release()
    camera.capture_request()


def test_picamera2_yuv420_array_keeps_its_stride_padding(picamera) -> None:
    camera = picamera.Picamera2(0)
    camera.configure(camera.create_preview_configuration(main={"size": (128, 96)}, lores={"size": (100, 56)}))
    camera.start()
    request = camera.capture_request()
    assert request.make_array("lores").shape == (56 * 3 // 2, 128)  # (height * 3 / 2, stride), as picamera2
    request.release()


def test_picamera2_camera_in_use_names_the_service(picamera) -> None:
    picamera.BUSY = True
    retries: list[float] = []
    source = sources.ReconnectingSource(
        sources.Picamera2Source(resolution=(64, 48)), max_attempts=2, sleep=retries.append
    )
    with pytest.raises(sources.SourceError) as caught:  # not retried: waiting will not free the camera
        source.open()
    assert retries == []
    message = str(caught.value)
    assert "\n" not in message
    assert "in use by another process" in message
    assert "edge.service" in message and "sudo systemctl stop edge" in message


def test_picamera2_unknown_lores_format_lists_the_valid_ones() -> None:
    with pytest.raises(sources.SourceError, match="lores_format.*YUV420.*RGB888.*'NV12'"):
        sources.Picamera2Source(lores=(64, 48), lores_format="NV12")


def test_picamera2_unplugged_mid_run_recovers(picamera, caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:  # plugged back in after the third wait
            picamera.CAMERAS = 1
            picamera.UNPLUGGED = False

    source = sources.ReconnectingSource(
        sources.Picamera2Source(resolution=(32, 24)), initial_backoff_s=0.5, sleep=fake_sleep
    )
    with caplog.at_level(logging.WARNING), source:
        assert source.read() is not None
        picamera.UNPLUGGED = True
        picamera.CAMERAS = 0
        frame = source.read()
    assert frame is not None and frame.index == 1
    assert sleeps == [0.5, 1.0, 2.0]
    assert source.reconnects == 1
    assert "picamera2:0" in caplog.text and "retry" in caplog.text and "is back" in caplog.text


def test_picamera2_camera_that_stops_delivering_times_out_instead_of_blocking(picamera) -> None:
    source = sources.Picamera2Source(resolution=(32, 24), capture_timeout_s=0.2)
    with source:
        assert source.read() is not None
        picamera.STALLED = True
        start = time.monotonic()
        with pytest.raises(sources.SourceUnavailable, match=r"picamera2 camera 0: no frame within 0.2 s"):
            source.read()
        assert time.monotonic() - start < 2.0
    assert picamera.instances[-1].held == 0


def test_run_with_a_stalled_picamera2_ends_at_its_deadline(picamera, tmp_path: Path) -> None:
    """The whole CLI: a camera that opens but never delivers ends with the deadline error, not a hang."""
    from edge.cli import main

    picamera.STALLED = True
    model = Path(__file__).resolve().parents[2] / "models" / "demo_int8.tflite"
    start = time.monotonic()
    code = main(["run", "--model", str(model), "--source", "picamera2", "--frames", "5", "--source-timeout", "3"])
    assert code != 0 and time.monotonic() - start < 30


def test_picamera2_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(sources.SourceError, match="picamera2 package is not installed"):
        sources.Picamera2Source().open()


def test_reconnect_gives_up_after_max_attempts() -> None:
    source = sources.ReconnectingSource(NeverOpens("cam7"), max_attempts=2, sleep=lambda s: None)
    with pytest.raises(sources.SourceUnavailable, match="cam7.*gave up after 2"):
        source.open()


def test_stop_event_ends_retries() -> None:
    stop = threading.Event()

    class Gone(sources.FrameSource):
        def _open(self) -> None:
            pass

        def _read(self):
            raise sources.SourceUnavailable("unplugged")

        def _close(self) -> None:
            pass

    source = sources.ReconnectingSource(Gone("cam"), stop=stop, sleep=lambda s: stop.set())
    with source:
        assert source.read() is None


def test_to_rgb_channel_orders() -> None:
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255
    assert convert_to_rgb(bgr, "BGR")[0, 0].tolist() == [0, 0, 255]
    assert convert_to_rgb(bgr, "RGB")[0, 0].tolist() == [255, 0, 0]
    assert convert_to_rgb(np.full((2, 2), 300.0), "BGR")[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="shape"):
        convert_to_rgb(np.zeros((2, 2, 5), np.uint8))


@pytest.mark.skipif(
    not (os.path.exists("/dev/video0") or Path("/proc/device-tree/model").exists()),
    reason="no camera on this machine (/dev/video0 absent, not a Raspberry Pi)",
)
def test_real_camera() -> None:
    try:
        import picamera2  # noqa: F401

        spec = "picamera2"
    except ImportError:
        if not os.path.exists("/dev/video0"):
            pytest.skip("Raspberry Pi without picamera2 installed and no /dev/video0")
        spec = "0"
    frames = _read_all(sources.open_source(spec, resolution=(640, 480), reconnect=False), limit=3)
    assert len(frames) == 3
    assert frames[0].image.ndim == 3 and frames[0].image.shape[2] == 3 and frames[0].image.dtype == np.uint8


def test_synthetic_prerender_cycles_the_same_frames() -> None:
    live = _read_all(sources.SyntheticSource((64, 48), paced=False, seed=5, num_frames=3))
    cached = _read_all(sources.SyntheticSource((64, 48), paced=False, seed=5, num_frames=7, prerender=3))
    assert len(cached) == 7
    for k, frame in enumerate(cached):
        assert np.array_equal(frame.image, live[k % 3].image)
        assert np.array_equal(frame.ground_truth.boxes, live[k % 3].ground_truth.boxes)


def test_cli_lores_format_reaches_the_camera_configuration(picamera) -> None:
    from edge.cli import main

    model = Path(__file__).resolve().parents[2] / "models" / "demo_int8.tflite"
    args = ["run", "--model", str(model), "--source", "picamera2", "--lores", "224x224", "--frames", "3", "--quiet"]
    assert main([*args, "--lores-format", "RGB888"]) == 0
    assert picamera.instances[-1].camera_config["lores"]["format"] == "RGB888"
    assert main(args) == 0
    assert picamera.instances[-1].camera_config["lores"]["format"] == "YUV420"
