"""The guest images are byte-identical to the recorded ones (tests/golden/image_digests.py says
from which commit and how to record them again after an intended change to the guest)."""
from __future__ import annotations

import json

from golden.image_digests import DIGEST_FILE, image_digests


def test_every_guest_image_is_byte_identical_to_the_recorded_one():
    recorded = json.loads(DIGEST_FILE.read_text())
    now = image_digests()
    assert sorted(now) == sorted(recorded)
    changed = [key for key in recorded if now[key] != recorded[key]]
    assert not changed, f"{len(changed)} guest images changed, e.g. {changed[:5]}"
