"""The user's header parser: loaded once, errors naming the file and the frame."""

import os
from pathlib import Path

import pytest
from astropy.io import fits

from lightcurver_ops.errors import ConfigError, HeaderParserError
from lightcurver_ops.header import load_header_parser, parse_frame_header

PARSER = """
def parse_header(header):
    return {"mjd": header["MJD-OBS"], "gain": header["GAIN"], "exptime": header["EXPTIME"]}
"""
FRAME = Path("/raw/night1/frame_007.fits")


def _header(**cards: object) -> fits.Header:
    header = fits.Header()
    for key, value in ({"MJD-OBS": 60000.5, "GAIN": 2.0, "EXPTIME": 300.0} | cards).items():
        if value is not None:
            header[key] = value
    return header


@pytest.fixture
def parser_file(tmp_path: Path) -> Path:
    path = tmp_path / "header_parser" / "parse_header.py"
    path.parent.mkdir()
    path.write_text(PARSER)
    return path


def test_parser_loaded_once_and_reloaded_when_edited(parser_file):
    first = load_header_parser(parser_file)
    assert load_header_parser(parser_file) is first
    info = parse_frame_header(first, _header(), FRAME)
    assert (info.mjd, info.gain, info.exptime, info.filter) == (60000.5, 2.0, 300.0, None)
    parser_file.write_text(PARSER.replace('"exptime"', '"filter": "r", "exptime"'))
    os.utime(parser_file, ns=(1, parser_file.stat().st_mtime_ns + 10**9))
    assert parse_frame_header(load_header_parser(parser_file), _header(), FRAME).filter == "r"


def test_missing_header_key_names_frame_and_key(parser_file):
    with pytest.raises(HeaderParserError) as info:
        parse_frame_header(load_header_parser(parser_file), _header(GAIN=None), FRAME)
    assert info.value.path == FRAME
    assert "frame_007.fits" in str(info.value) and "missing header key" in str(info.value)
    assert "GAIN" in str(info.value)
    assert str(parser_file.resolve()) in str(info.value)


@pytest.mark.parametrize(
    ("cards", "message"),
    [
        ({"EXPTIME": 0.0}, "invalid 'exptime'"),
        ({"GAIN": -1.0}, "invalid 'gain'"),
        ({"GAIN": "two"}, "non-numeric 'gain'"),
        ({"MJD-OBS": "nan"}, "invalid 'mjd'"),
    ],
)
def test_unusable_values_are_refused(parser_file, cards, message):
    with pytest.raises(HeaderParserError, match=message):
        parse_frame_header(load_header_parser(parser_file), _header(**cards), FRAME)


def test_parser_returning_no_dict(parser_file):
    with pytest.raises(HeaderParserError, match="expected a dict"):
        parse_frame_header(lambda header: [1, 2], _header(), FRAME)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def parse_header(header:\n", "fails to import: SyntaxError"),
        ("x = 1\n", "no function parse_header"),
    ],
)
def test_broken_parser_file_names_the_file(parser_file, source, message):
    parser_file.write_text(source)
    with pytest.raises(ConfigError, match=message) as info:
        load_header_parser(parser_file)
    assert str(parser_file) in str(info.value)


def test_missing_parser_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_header_parser(tmp_path / "header_parser" / "parse_header.py")
