"""Generated Binance frames the benchmarks feed: trades and depth updates, seeded."""

from __future__ import annotations

import random

import orjson


def gen_trades(n: int, sym: str = "BTCUSDT", seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    px = 6_500_000  # cents
    out = []
    for i in range(n):
        px = max(1, px + rnd.randint(-5, 5))
        data = {"e": "trade", "E": 1700000000000 + i, "s": sym, "t": i + 1,
                "p": f"{px // 100}.{px % 100:02d}", "q": f"0.{rnd.randint(1, 99999):05d}",
                "T": 1700000000000 + i, "m": rnd.random() < 0.5, "M": True}  # fmt: skip
        out.append(orjson.dumps({"stream": f"{sym.lower()}@trade", "data": data}))
    return out


def gen_depth(n: int, sym: str = "BTCUSDT", levels: int = 10, seed: int = 2) -> list[bytes]:
    rnd = random.Random(seed)
    out, u = [], 1000
    for i in range(n):

        def side(base: int, sign: int) -> list[list[str]]:
            return [[f"{(base + sign * k) // 100}.{(base + sign * k) % 100:02d}",
                     f"{rnd.randint(0, 5)}.{rnd.randint(0, 99999):05d}"]
                    for k in range(levels)]  # fmt: skip

        data = {"e": "depthUpdate", "E": 1700000000000 + i, "s": sym, "U": u + 1, "u": u + 3,
                "b": side(6_499_990, -1), "a": side(6_500_010, 1)}  # fmt: skip
        u += 3
        out.append(orjson.dumps({"stream": f"{sym.lower()}@depth@100ms", "data": data}))
    return out
