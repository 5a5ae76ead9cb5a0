"""One home for distances: the catalogue (store distance on a listing) and search ("near me").

Coordinates are GCJ-02 as stores give them; over city distances the spherical formula is
accurate to well under 0.5%, which is more than "1.2 km away" needs.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
_M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lng: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) of a box that contains the circle of ``radius_m``
    around the point: a cheap, index-friendly prefilter; exact distance decides afterwards."""
    dlat = radius_m / _M_PER_DEG_LAT
    min_lat, max_lat = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    # Longitude degrees shrink with latitude; use the latitude of the box edge nearest a pole.
    widest = max(abs(min_lat), abs(max_lat))
    cos_lat = math.cos(math.radians(widest))
    if cos_lat < 1e-9 or radius_m / (_M_PER_DEG_LAT * cos_lat) >= 180:
        return min_lat, max_lat, -180.0, 180.0
    dlng = radius_m / (_M_PER_DEG_LAT * cos_lat)
    return min_lat, max_lat, lng - dlng, lng + dlng
