"""The last few loaded volumes, kept so that flipping back to a series is instant.

Readers go back and forth between series of a study all day (the thorax, then the lung
kernel, then the thorax again). Decoding a 300-slice CT takes about a second; keeping it
costs memory. `VolumeCache` is a least-recently-used map from `Series.key` to the loaded
`Volume`, bounded by the total bytes of the voxels it holds (not by a count: one 4D perfusion
can weigh as much as twenty CTs). Plain Python, no Qt: the main window consults it before
starting a load.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydicom loads with the first series, not before the first paint
    from medviewer.core.dicom.volume import Volume


# 1.5 GB of voxels: five 300 x 512 x 512 int16 CTs (150 MiB each) with room to spare, yet
# well inside the 8 GB of a reading-room workstation next to the volume on screen.
VOLUME_CACHE_BYTES = 1_500_000_000


def volume_bytes(volume: Volume) -> int:
    """What a volume costs to keep: its voxels (headers and sources are small)."""
    return int(volume.voxels.nbytes)


class VolumeCache:
    """Least recently used volumes by series key, at most `budget_bytes` of voxels in all."""

    def __init__(self, budget_bytes: int = VOLUME_CACHE_BYTES) -> None:
        self.budget_bytes = int(budget_bytes)
        self._volumes: OrderedDict[str, Volume] = OrderedDict()

    def __len__(self) -> int:
        return len(self._volumes)

    def __contains__(self, key: object) -> bool:
        return key in self._volumes

    def keys(self) -> list[str]:
        """Series keys, least recently used first."""
        return list(self._volumes)

    @property
    def total_bytes(self) -> int:
        return sum(volume_bytes(v) for v in self._volumes.values())

    def get(self, key: str) -> Volume | None:
        """The volume of a series if kept; a hit makes it the most recently used."""
        volume = self._volumes.get(key)
        if volume is not None:
            self._volumes.move_to_end(key)
        return volume

    def put(self, key: str, volume: Volume) -> None:
        """Keep a volume, evicting the least recently used until it fits. A volume larger
        than the whole budget is not kept (and evicts nothing)."""
        size = volume_bytes(volume)
        self._volumes.pop(key, None)
        if size > self.budget_bytes:
            return
        while self._volumes and self.total_bytes + size > self.budget_bytes:
            self._volumes.popitem(last=False)
        self._volumes[key] = volume

    def clear(self) -> None:
        self._volumes.clear()
