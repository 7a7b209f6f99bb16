#!/usr/bin/env python3
"""Generates the example project's seeds: three related CSVs with the dirt real exports have.

Deterministic (fixed random seed): running it again rewrites the same bytes.
  users.csv  ~2,050 rows  duplicated rows, mixed date formats, empty strings for nulls
  pins.csv   ~6,350 rows  follower counts like "12k" / "1.2M", duplicates, late-arriving
                          updated copies of earlier pins (same pin_id, later ingested_at)
  geo.csv    ~4,100 rows  geolocation events: duplicates, out-of-range coordinates, blank countries

Usage: python3 scripts/generate_seeds.py [output folder, default seeds/]
"""
import csv
import os
import random
import sys
from datetime import datetime, timedelta

rng = random.Random(42)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "seeds")

FIRST = ["Ada", "Grace", "Alan", "Linus", "Barbara", "Edsger", "Donald", "Margaret", "Ken", "Frances",
         "John", "Radia", "Tim", "Hedy", "Niklaus", "Sophie", "Guido", "Yukihiro", "Bjarne", "Anita"]
LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Dijkstra", "Knuth", "Hamilton", "Thompson",
        "Allen", "McCarthy", "Perlman", "Berners-Lee", "Lamarr", "Wirth", "Wilson", "van Rossum", "Matsumoto"]
CATEGORIES = ["art", "beauty", "christmas", "diy-and-crafts", "education", "event-planning", "finance",
              "home-decor", "mens-fashion", "quotes", "tattoos", "travel", "vehicles"]
COUNTRIES = ["United States", "India", "Brazil", "Germany", "France", "Japan", "Nigeria", "Mexico",
             "United Kingdom", "Canada", "Australia", "Spain", "Indonesia", "Egypt"]
START = datetime(2018, 1, 1)


def ts_dirty(t: datetime) -> str:
    """One timestamp in one of three export formats."""
    r = rng.random()
    if r < 0.6:
        return t.strftime("%Y-%m-%d %H:%M:%S")
    if r < 0.85:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return t.strftime("%d/%m/%Y %H:%M")


def followers_dirty(n: int) -> str:
    if rng.random() < 0.03:
        return ""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n // 1000}k"
    return str(n)


def write(name, header, rows):
    path = os.path.join(OUT, name)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(f"{path}: {len(rows)} rows")


def main():
    os.makedirs(OUT, exist_ok=True)
    # users
    users = []
    for uid in range(1, 2001):
        joined = START + timedelta(minutes=rng.randint(0, 60 * 24 * 365 * 5))
        age = rng.randint(18, 80)
        users.append([uid, rng.choice(FIRST), rng.choice(LAST), age if rng.random() > 0.02 else "", ts_dirty(joined)])
    users += [list(u) for u in rng.sample(users, 50)]  # exact duplicates from a re-export
    rng.shuffle(users)
    write("users.csv", ["user_id", "first_name", "last_name", "age", "date_joined"], users)

    # pins
    pins = []
    for pid in range(1, 6001):
        created = START + timedelta(minutes=rng.randint(0, 60 * 24 * 365 * 6))
        ingested = created + timedelta(hours=rng.randint(1, 72))
        followers = int(rng.paretovariate(1.2) * 200)
        pins.append([
            pid, rng.randint(1, 2000), rng.choice(CATEGORIES),
            f"Pin {pid}" if rng.random() > 0.02 else "",
            followers_dirty(followers),
            rng.choice(["image", "video", "image", "image", "multi-video(story page format)"]),
            ts_dirty(created), ingested.strftime("%Y-%m-%d %H:%M:%S"),
        ])
    dups = [list(p) for p in rng.sample(pins, 200)]
    # Late-arriving updates: the same pin re-ingested later with a new follower count.
    late = []
    for p in rng.sample(pins, 150):
        q = list(p)
        q[4] = followers_dirty(int(rng.paretovariate(1.2) * 400))
        q[7] = (datetime.strptime(p[7], "%Y-%m-%d %H:%M:%S") + timedelta(days=rng.randint(1, 30))).strftime("%Y-%m-%d %H:%M:%S")
        late.append(q)
    pins = pins + dups + late
    rng.shuffle(pins)
    write("pins.csv", ["pin_id", "user_id", "category", "title", "follower_count", "media_type", "created_at", "ingested_at"], pins)

    # geolocation
    geo = []
    for pid in rng.sample(range(1, 6001), 4000):
        lat = round(rng.uniform(-90, 90), 5)
        lon = round(rng.uniform(-180, 180), 5)
        if rng.random() < 0.01:
            lat = 999.0  # a broken GPS fix
        country = rng.choice(COUNTRIES) if rng.random() > 0.04 else ""
        geo.append([pid, ts_dirty(START + timedelta(minutes=rng.randint(0, 60 * 24 * 365 * 6))), lat, lon, country])
    geo += [list(g) for g in rng.sample(geo, 100)]
    rng.shuffle(geo)
    write("geo.csv", ["pin_id", "event_at", "latitude", "longitude", "country"], geo)


if __name__ == "__main__":
    main()
