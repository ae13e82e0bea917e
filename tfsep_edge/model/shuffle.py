"""The channel shuffle as a permutation, for graphs that fold it into the next weights instead of
moving data (tfsepnet.ChannelShuffle is the definition; tests/test_foundation.py holds them equal)."""

from __future__ import annotations


def shuffle_sources(channels: int, groups: int) -> list[int]:
    """sources[j]: the channel that shuffled channel j comes from ((c/g, g) -> (g, c/g))."""
    per = channels // groups
    return [(j % per) * groups + j // per for j in range(channels)]


def shuffle_positions(channels: int, groups: int) -> list[int]:
    """positions[i]: where the shuffle moves channel i (the inverse of shuffle_sources)."""
    positions = [0] * channels
    for j, source in enumerate(shuffle_sources(channels, groups)):
        positions[source] = j
    return positions
