"""mrcnn.engine.schedule: staged schedules, scaled to a total epoch count and resumed."""
import pytest

from mrcnn.engine.schedule import default_schedule, scale_schedule, stages_from

THREE = [{"layers": "heads", "epochs": 40, "learning_rate": 0.002},
         {"layers": "4+", "epochs": 120, "learning_rate": 0.002},
         {"layers": "all", "epochs": 160, "learning_rate": 0.0002}]


def test_default_schedule_is_matterports_recipe():
    assert default_schedule(0.01) == [{"layers": "heads", "epochs": 1, "learning_rate": 0.01},
                                      {"layers": "all", "epochs": 2, "learning_rate": 0.001}]
    assert isinstance(default_schedule(1)[0]["learning_rate"], float)


# Each stop is ceil(stop * total / 160), the last one is the total itself, and a stage whose stop
# is not after the previous one is dropped.
@pytest.mark.parametrize("total,stops,layers", [
    (160, [40, 120, 160], ["heads", "4+", "all"]),
    (16, [4, 12, 16], ["heads", "4+", "all"]),      # 40/160*16 = 4, 120/160*16 = 12
    (10, [3, 8, 10], ["heads", "4+", "all"]),       # ceil(2.5) = 3, ceil(7.5) = 8
    (4, [1, 3, 4], ["heads", "4+", "all"]),
    (3, [1, 3], ["heads", "4+"]),                   # "4+" already reaches 3: "all" gets no epoch
    (1, [1], ["heads"]),
])
def test_scale_schedule_stops(total, stops, layers):
    out = scale_schedule(THREE, total, 0.5)
    assert [s["epochs"] for s in out] == stops
    assert [s["layers"] for s in out] == layers
    assert [s["learning_rate"] for s in out] == [st["learning_rate"] for st in THREE][:len(out)]


def test_scale_schedule_fills_missing_rates_and_keeps_the_input():
    schedule = [{"layers": "heads", "epochs": 3}, {"layers": "all", "epochs": 6, "learning_rate": 1}]
    out = scale_schedule(schedule, 4, 0.02)
    assert out == [{"layers": "heads", "epochs": 2, "learning_rate": 0.02},   # ceil(3 * 4 / 6) = 2
                   {"layers": "all", "epochs": 4, "learning_rate": 1.0}]
    assert isinstance(out[1]["learning_rate"], float)
    assert schedule == [{"layers": "heads", "epochs": 3}, {"layers": "all", "epochs": 6, "learning_rate": 1}]


def test_scale_schedule_default():
    # No schedule: matterport's recipe, half heads, half all layers at a tenth of the rate.
    assert scale_schedule(None, 5, 0.01) == [{"layers": "heads", "epochs": 3, "learning_rate": 0.01},
                                             {"layers": "all", "epochs": 5, "learning_rate": 0.001}]


def test_scale_schedule_rejects_no_epochs():
    with pytest.raises(ValueError, match="total_epochs"):
        scale_schedule(THREE, 0, 0.1)


@pytest.mark.parametrize("completed,layers", [
    (0, ["heads", "4+", "all"]), (39, ["heads", "4+", "all"]), (40, ["4+", "all"]),
    (119, ["4+", "all"]), (120, ["all"]), (159, ["all"]), (160, []),
])
def test_stages_from_resumes_after_the_completed_epoch(completed, layers):
    assert [s["layers"] for s in stages_from(THREE, completed)] == layers
