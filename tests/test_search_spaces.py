"""Every model's Optuna space yields valid models; EASE, RP3beta and ItemKNN tune for real."""

import optuna
import pytest

import datasets
from baselines import FitData, get_model_class, make_model, model_names
from benchmark.evaluate import evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("name", model_names())
def test_search_space_samples_construct_valid_models(name):
    cls = get_model_class(name)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        params = cls.search_space(trial)
        assert set(params) <= set(cls.param_names()), "space names must be constructor arguments"
        make_model(name, params)
        study.tell(trial, 0.0)


@pytest.mark.parametrize("name", ["ease", "rp3beta", "itemknn"])
def test_a_few_trials_tune_on_validation(name, ml100k):
    split = datasets.split(ml100k, "random", seed=0)
    cls = get_model_class(name)

    def objective(trial):
        model = make_model(name, cls.search_space(trial)).fit(FitData(train=split.train))
        res = evaluate(model.score, split.valid, split.train, metrics=("recall",), ks=(20,))
        return res.summary["recall@20"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=4)
    values = [t.value for t in study.trials]
    assert len(values) == 4 and all(0 <= v <= 1 for v in values)
    pop = make_model("pop").fit(FitData(train=split.train))
    pop_recall = evaluate(pop.score, split.valid, split.train, metrics=("recall",), ks=(20,)).summary["recall@20"]
    assert study.best_value == max(values) > 1.2 * pop_recall
    assert len({round(v, 6) for v in values}) > 1  # the space moves the objective
