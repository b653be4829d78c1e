"""Where content helps (issue 13 part 5): head/tail items and user-activity quartiles."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp

from benchmark.evaluate import evaluate
from benchmark.leaderboard import write_leaderboard
from benchmark.segments import USER_ACTIVITY, head_items, segment_arrays
from tests.test_placebo import _campaign, clustered_dataset


def test_head_items_hold_the_first_fifth_of_the_interactions():
    pop = np.array([1, 50, 3, 20, 20, 6, 0])  # 100 interactions: item 1 alone holds 50 %
    assert np.flatnonzero(head_items(pop)).tolist() == [1]
    pop = np.array([10] * 10)  # ties by item index: the first two reach 20 %
    assert np.flatnonzero(head_items(pop)).tolist() == [0, 1]
    assert not head_items(np.zeros(4)).any()


def test_item_group_recall_is_recall_against_the_groups_test_items_only():
    rng = np.random.default_rng(0)
    truth = sp.random(40, 30, density=0.15, random_state=1, format="csr")
    truth.data[:] = 1
    scores = rng.random((40, 30))
    head = np.zeros(30, dtype=bool)
    head[:6] = True
    res = evaluate(lambda u: scores[u], truth, ks=(5,), item_groups={"head": head, "tail": ~head})
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    for u in range(40):
        rel = set(truth[u].indices)
        for name, mask in (("head", head), ("tail", ~head)):
            r = {i for i in rel if mask[i]}
            got = res.per_user[f"recall@5|{name}"][u]
            if not r:
                assert np.isnan(got)
            else:
                assert got == len(r & set(top[u])) / len(r)
    # the ordinary metrics do not move
    plain = evaluate(lambda u: scores[u], truth, ks=(5,))
    for k, v in plain.per_user.items():
        np.testing.assert_array_equal(res.per_user[k], v)


def test_user_quartiles_split_the_test_users_by_training_interactions():
    x = np.array([0.1, 0.2, np.nan, 0.4, 0.5, 0.6, 0.7, 0.8])
    counts = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.float32)
    seg = segment_arrays({"recall@20": x, "recall@20|head": x, "recall@20|tail": x, USER_ACTIVITY: counts})
    members = {q: np.flatnonzero(~np.isnan(seg[f"users Q{q}"])).tolist() for q in range(1, 5)}
    # test users 1,2,4,5,6,7,8 interactions: quartile edges 3, 5, 6.5 (a user on an edge goes below)
    assert members == {1: [0, 1], 2: [3, 4], 3: [5], 4: [6, 7]}
    assert segment_arrays({"recall@20": x}) is None  # a record made before the segment arrays


def test_the_page_and_json_show_the_segments_with_the_placebos(tmp_path):
    ds = clustered_dataset(True)
    store = _campaign(tmp_path, ds, ["pop", "content-knn", "fusion-concat"])
    rec = next(store.records())
    pu = store.per_user(rec)
    assert {"recall@20|head", "recall@20|tail", USER_ACTIVITY} <= set(pu)
    page = write_leaderboard(tmp_path).read_text()
    assert "Where content helps: test Recall@20 of the best fusion model `fusion-concat`" in page
    assert "| head items" in page and "Lift vs shuffled [95% CI]" in page
    seg = json.loads((tmp_path / "LEADERBOARD.json").read_text())["datasets"]["content"]["segments"]
    assert seg["fusion"] == "fusion-concat" and seg["reference"] == "content-knn"
    rows = {r["segment"]: r for r in seg["rows"]}
    lift = rows["all"]["lift"]["fusion-concat (shuffle placebo)"]
    lo, hi = lift["ci95"]
    assert lift["delta"] > 0.5 and lo <= lift["delta"] <= hi  # the content drives this data
    # the all-users lift is the leaderboard's content-lift Δ
    board = json.loads((tmp_path / "LEADERBOARD.json").read_text())["datasets"]["content"]["models"]
    assert lift["delta"] == board["fusion-concat"]["placebo_lift"]["shuffle"]["recall@20"]["delta"]
