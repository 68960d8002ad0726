"""Observing conditions of the target from pyephem: airmass, altitude, Moon and Sun."""

import math
from dataclasses import dataclass
from numbers import Real

import ephem


@dataclass(frozen=True)
class Ephemeris:
    """Observing conditions of a target at one time and place.

    Attributes
    ----------
    airmass : float
        Rozenberg airmass of the target; -1 when the target is below the horizon.
    altitude, azimuth : float
        Target position, deg (azimuth from north through east).
    degrees_to_moon : float
        Angular distance target-Moon, deg.
    moon_phase : float
        Illuminated fraction of the Moon, percent (0-100).
    moon_altitude, sun_altitude : float
        deg.
    """

    airmass: float
    altitude: float
    azimuth: float
    degrees_to_moon: float
    moon_phase: float
    moon_altitude: float
    sun_altitude: float


def ephemeris(
    mjd: float,
    ra_deg: float,
    dec_deg: float,
    latitude_deg: float,
    longitude_deg: float,
    elevation_m: float,
) -> Ephemeris:
    """Target, Moon and Sun positions for an observer, with pyephem.

    pyephem's default atmosphere (1010 mbar, 15 °C) applies, so all altitudes include refraction.
    The target is a fixed J2000 position. The airmass is Rozenberg's
    ``X = 1 / (sin h + 0.025 exp(-11 sin h))`` of the (refracted) altitude h, and -1 below the horizon.

    Parameters
    ----------
    mjd : float
        Modified Julian Date (UTC) of the observation.
    ra_deg, dec_deg : float
        Target J2000 right ascension and declination, deg.
    latitude_deg, longitude_deg : float
        Observer geodetic latitude and east longitude, deg.
    elevation_m : float
        Observer elevation above sea level, m.

    Returns
    -------
    Ephemeris

    Raises
    ------
    ValueError
        If a value is not finite or out of range.
    """
    for name, value in [
        ("mjd", mjd),
        ("ra_deg", ra_deg),
        ("dec_deg", dec_deg),
        ("latitude_deg", latitude_deg),
        ("longitude_deg", longitude_deg),
        ("elevation_m", elevation_m),
    ]:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    for name, value in [("dec_deg", dec_deg), ("latitude_deg", latitude_deg)]:
        if not -90 <= value <= 90:
            raise ValueError(f"{name} must be within [-90, 90], got {value!r}")

    observer = ephem.Observer()
    observer.lat = ephem.degrees(math.radians(latitude_deg))
    observer.lon = ephem.degrees(math.radians(longitude_deg))
    observer.elevation = float(elevation_m)
    observer.date = ephem.Date(float(mjd) + 2400000.5 - 2415020.0)  # Dublin Julian Date
    observer.epoch = ephem.J2000

    target = ephem.FixedBody()
    target._ra = ephem.hours(math.radians(ra_deg % 360.0))
    target._dec = ephem.degrees(math.radians(dec_deg))
    target._epoch = ephem.J2000
    target.compute(observer)
    moon = ephem.Moon(observer)
    sun = ephem.Sun(observer)

    sin_h = math.sin(float(target.alt))
    airmass = 1.0 / (sin_h + 0.025 * math.exp(-11.0 * sin_h)) if sin_h >= 0 else -1.0
    return Ephemeris(
        airmass=airmass,
        altitude=math.degrees(target.alt),
        azimuth=math.degrees(target.az),
        degrees_to_moon=math.degrees(ephem.separation(target, moon)),
        moon_phase=float(moon.phase),
        moon_altitude=math.degrees(moon.alt),
        sun_altitude=math.degrees(sun.alt),
    )
