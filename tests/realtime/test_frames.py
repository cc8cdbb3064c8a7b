"""Server text frames built by hand parse as RFC 6455 frames, at every length encoding."""

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from edge.realtime.frames import text_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_a_text_frame_of_any_length_parses_back_to_its_text(length):
    text = ("é" * length)[:length] if length < 10 else "a" * (length - 2) + "é"
    reader = StreamReader()
    reader.feed_data(text_frame(text))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert (frame.opcode, frame.fin, frame.rsv1) == (Opcode.TEXT, True, False)
    assert frame.data.decode() == text
