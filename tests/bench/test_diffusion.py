"""`labkit bench diffusion`: a tiny run end to end."""

from __future__ import annotations

import pytest

from labkit.bench import diffusion


def test_tiny_run_completes_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quick", "--seeds", "1", "--rounds", "2", "--problems", "digit", "--no-progress"]
    assert diffusion.main(argv) == 0
    out = capsys.readouterr().out
    assert "ZO-RankSGD" in out


def test_class_methods_run_only_where_a_class_is_steered() -> None:
    from labkit.models.digits import DigitClassifier, load_digits_model

    shared = diffusion._Shared(load_digits_model(), DigitClassifier())
    traces = diffusion.run_diffusion(
        problems=["digit", "digit-against"],
        methods=["ZO-RankSGD", "ZO-RankSGD+class"],
        renormalize=[True],
        seeds=1,
        rounds=1,
        progress=False,
        shared=shared,
    )
    # The unconditional problem has no class to steer: the +class method is left out there.
    assert [(t.problem, t.method) for t in traces] == [
        ("digit", "ZO-RankSGD"),
        ("digit-against", "ZO-RankSGD"),
        ("digit-against", "ZO-RankSGD+class"),
    ]
    plain, steered = traces[1:]
    # Both start from the same latent and the same image (the class offset starts at 0) ...
    assert plain.start_seed == steered.start_seed and plain.scores[0] == steered.scores[0]
    # ... which the model, conditioned on another digit, does not draw as the target.
    assert plain.scores[0] < diffusion.START_BELOW and len(plain.scores) == 2
    assert diffusion._condition("digit-against", 0) != plain.digit
    with pytest.raises(ValueError, match="needs a conditioned problem"):
        diffusion.run_one(
            shared,
            problem="picture",
            method=diffusion.METHODS["ZO-RankSGD+class"],
            renormalize=True,
            seed=0,
            rounds=1,
        )
