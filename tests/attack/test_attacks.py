"""Every attack of the catalogue as a test: it must end in a clear error, a skip that is reported,
or a correct result; never a crash, a hang or a silently wrong result."""
import pytest

from tests.attack import ATTACKS, CLEAR, SKIPPED, SURVIVED, load_all
from tests.attack.catalogue import run_one

load_all()


@pytest.mark.parametrize("a", ATTACKS, ids=[f"item{a.item:02d}-{a.name}" for a in ATTACKS])
def test_attack(a, tmp_path):
    outcome, detail = run_one(a, str(tmp_path))
    assert outcome in (CLEAR, SKIPPED, SURVIVED), f"{outcome}: {detail}"
