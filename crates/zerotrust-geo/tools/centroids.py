#!/usr/bin/env python3
"""Regenerates src/centroids.rs: ISO 3166-1 alpha-2 code -> (latitude, longitude, radius_km).

Sources (both MIT licensed; their notices are reproduced in the generated file):
  - countryinfo (PyPI, 1.0.1), countryinfo/data/*.json: "latlng" (the CIA World Factbook's
    geographic centre of each country) and "area" (km^2).
        pip download --no-deps countryinfo==1.0.1   # then unzip the wheel
  - country-json (npm, 2.3.0), src/country-by-geo-coordinates.json: each country's bounding box
    (main territory), and src/country-by-abbreviation.json to key it by code.
        npm pack country-json@2.3.0                 # then untar
A few territories missing from both (Aland, Curacao, Kosovo, ...) are filled in by hand below, from
the Factbook's public-domain coordinates and areas.

radius_km is how far a client placed only "in this country" may be from the centre: the larger of
the equal-area radius sqrt(area / pi) and, where the bounding box is sane, the distance from the
centre to the box's farthest corner (so Chile, Japan, Norway and archipelagos get their real
extent), never below 10 km. It only ever overstates the extent: a larger radius can hide travel but
never invent it.

Usage: tools/centroids.py COUNTRYINFO_DATA_DIR COUNTRY_JSON_SRC_DIR > src/centroids.rs
"""

import glob
import json
import math
import os
import sys

MANUAL = {
    # code: (lat, lon, area_km2, extent_km or None)
    "AQ": (-75.0, 0.0, 14_200_000, 2_600),
    "AX": (60.1167, 19.9, 1_580, 80),
    "BL": (17.9, -62.8333, 25, None),
    "BQ": (12.1833, -68.2333, 328, 160),
    "BV": (-54.4333, 3.4, 49, None),
    "CW": (12.1667, -69.0, 444, None),
    "GF": (4.0, -53.0, 83_534, None),
    "GP": (16.25, -61.5833, 1_628, None),
    "GS": (-54.5, -37.0, 3_903, 700),
    "MF": (18.075, -63.05, 54, None),
    "MQ": (14.6667, -61.0, 1_128, None),
    "PS": (31.9, 35.2, 6_020, 120),
    "RE": (-21.15, 55.5, 2_511, None),
    "SH": (-15.95, -5.7, 394, 2_500),  # Saint Helena, Ascension and Tristan da Cunha
    "SJ": (78.0, 20.0, 62_045, 1_000),
    "SX": (18.0417, -63.0667, 34, None),
    "TC": (21.75, -71.5833, 948, 100),
    "UM": (19.2833, 166.6, 34, 3_500),  # scattered Pacific atolls
    "VG": (18.5, -64.5, 151, 40),
    "VI": (18.35, -64.9333, 346, 60),
    "XK": (42.5833, 21.0, 10_887, None),  # Kosovo (user-assigned code used by geo databases)
    "YT": (-12.8333, 45.1667, 374, None),
}

# Countries whose bounding box is missing or unusable: far points of their territory (lat, lon),
# the farthest of which sets the radius.
FAR_POINTS = {
    "CD": [(-6.0, 12.2), (-11.7, 27.5), (5.4, 27.4), (-13.4, 29.5)],
    "CG": [(-4.8, 11.9), (3.7, 18.6)],
    "CS": [(46.2, 19.7), (42.2, 22.5), (41.9, 19.2)],
    "GB": [(60.8, -0.9), (50.0, -5.7), (58.2, -7.0), (54.5, -8.2)],
    "KZ": [(46.5, 49.0), (49.1, 87.3), (40.6, 68.5), (55.4, 69.2)],
    "LK": [(9.8, 80.2), (5.9, 80.6)],
    "LY": [(33.2, 11.6), (19.5, 24.0), (31.7, 25.1), (23.4, 10.0)],
    "MM": [(28.5, 97.4), (10.0, 98.6), (21.0, 92.2)],
    "NZ": [(-34.4, 172.7), (-47.3, 167.5), (-44.0, -176.5)],
    "RS": [(46.2, 19.7), (42.2, 22.5), (43.0, 19.3)],
    "RU": [(54.7, 20.5), (66.1, -169.7), (43.6, 39.7), (43.1, 131.9)],
    "TW": [(25.3, 121.5), (21.9, 120.8), (24.4, 118.3)],
}

EARTH_RADIUS_KM = 6371.0088


def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat, dlon = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def bounding_boxes(src):
    with open(os.path.join(src, "country-by-abbreviation.json"), encoding="utf-8") as f:
        codes = {d["country"]: d["abbreviation"] for d in json.load(f)}
    boxes = {}
    with open(os.path.join(src, "country-by-geo-coordinates.json"), encoding="utf-8") as f:
        for d in json.load(f):
            code = codes.get(d["country"])
            values = [d.get(k) for k in ("north", "south", "west", "east")]
            # Entries typed as strings or null are hand-made placeholders; skip them.
            if not code or not all(isinstance(v, (int, float)) for v in values):
                continue
            north, south, west, east = values
            # Boxes across the antimeridian (west > east) or implausibly large are skipped.
            if west > east or north - south > 60 or east - west > 90:
                continue
            boxes[code] = (north, south, west, east)
    return boxes


def main():
    info_dir, cj_dir = sys.argv[1], sys.argv[2]
    boxes = bounding_boxes(cj_dir)
    rows = {}
    for path in sorted(glob.glob(os.path.join(info_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        code = (d.get("ISO") or {}).get("alpha2")
        latlng, area = d.get("latlng"), d.get("area")
        if not code or len(code) != 2 or not latlng or not area or code in rows:
            continue
        lat, lon, area = float(latlng[0]), float(latlng[1]), float(area)
        radius = math.sqrt(area / math.pi)
        box = boxes.get(code)
        if box and box[1] - 2 <= lat <= box[0] + 2 and box[2] - 2 <= lon <= box[3] + 2:
            far = max(haversine(lat, lon, la, lo) for la in box[:2] for lo in box[2:])
            radius = max(radius, far)
        for la, lo in FAR_POINTS.get(code, []):
            radius = max(radius, haversine(lat, lon, la, lo))
        rows[code] = (lat, lon, radius)
    for code, (lat, lon, area, extent) in MANUAL.items():
        if code not in rows:
            rows[code] = (lat, lon, max(math.sqrt(area / math.pi), extent or 0))

    out = sys.stdout
    out.write(HEADER.format(count=len(rows)))
    for code in sorted(rows):
        lat, lon, radius = rows[code]
        out.write(
            f"    c(*b\"{code}\", {lat:.4f}, {lon:.4f}, {max(10, round(radius))}.0),\n"
        )
    out.write("];\n")


HEADER = """\
// @generated by tools/centroids.py; edit that script, not this table.
//
// Data: countryinfo (MIT License, Copyright (c) 2018 Porimol Chandro) and country-json (MIT
// License, Copyright (c) 2015 Samson Daniel), with a few entries from the CIA World Factbook
// (public domain). Permission is hereby granted, free of charge, to any person obtaining a copy of
// this software and associated documentation files (the "Software"), to deal in the Software
// without restriction, including without limitation the rights to use, copy, modify, merge,
// publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to
// whom the Software is furnished to do so, subject to the following conditions: The above
// copyright notice and this permission notice shall be included in all copies or substantial
// portions of the Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.

use super::{{Centroid, c}};

/// {count} countries and territories, sorted by code.
pub(super) const TABLE: [Centroid; {count}] = [
"""

if __name__ == "__main__":
    main()
