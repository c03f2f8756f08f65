"""Chinese-style names for a fictional county: places, people, roads, sites.

Everything is drawn from a ``random.Random`` the caller owns, so a seed gives the same
county every time. Names are made up from common characters; any likeness to a real place
or person is chance.
"""

from __future__ import annotations

from random import Random

_PLACE_FIRST = "东西南北新大小石沙龙凤金银长清白黄青太平安和永兴富桂荔榕横丰乐福泰华"
_PLACE_SECOND = "湖岗塘洲坑围岭田头浦湾山江桥坪坳涌滘冲埔口洞园岸基圩"
_SURNAMES = "陈李黄张梁林刘何罗郑谢吴冯邓曾彭周叶苏潘卢蔡杨胡麦区莫钟谭"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玲志红建国文斌辉婷雪慧"
_ROAD_SUFFIX = ("路", "大道", "街", "大街", "巷", "东路", "西路", "南路", "北路")

# (site kind, how it appears in an address); the weights follow what a grid holds most of.
SITE_KINDS: tuple[tuple[str, int], ...] = (
    ("住宅楼", 30),
    ("出租屋", 20),
    ("商铺", 15),
    ("农贸市场", 4),
    ("厂房", 10),
    ("仓库", 6),
    ("小学", 3),
    ("幼儿园", 3),
    ("养老院", 2),
    ("宾馆", 3),
    ("餐饮店", 4),
)


class NamePool:
    """Hands out place names that are unique within one county."""

    def __init__(self, rng: Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def place(self) -> str:
        """A two-character place name not handed out before (three when two run out)."""
        for _ in range(200):
            name = self._rng.choice(_PLACE_FIRST) + self._rng.choice(_PLACE_SECOND)
            if name not in self._used:
                self._used.add(name)
                return name
        while True:
            name = (
                self._rng.choice(_PLACE_FIRST)
                + self._rng.choice(_PLACE_FIRST)
                + self._rng.choice(_PLACE_SECOND)
            )
            if name not in self._used:
                self._used.add(name)
                return name


def place(rng: Random) -> str:
    """A place name for a shop or market; these may repeat within a county."""
    return rng.choice(_PLACE_FIRST) + rng.choice(_PLACE_SECOND)


def person(rng: Random) -> str:
    given = rng.choice(_GIVEN) + (rng.choice(_GIVEN) if rng.random() < 0.6 else "")
    return rng.choice(_SURNAMES) + given


def mobile(rng: Random) -> str:
    """An 11-digit mobile number in the 170 (virtual operator) range, made up."""
    return "170" + "".join(str(rng.randrange(10)) for _ in range(8))


def road(rng: Random) -> str:
    """A road name; roads may repeat between villages, as they do in the field."""
    return rng.choice(_PLACE_FIRST) + rng.choice(_PLACE_SECOND) + rng.choice(_ROAD_SUFFIX)


def site_kind(rng: Random) -> str:
    kinds = [kind for kind, _ in SITE_KINDS]
    weights = [weight for _, weight in SITE_KINDS]
    return rng.choices(kinds, weights)[0]
