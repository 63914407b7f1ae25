import pytest
import torch


@pytest.fixture(scope="module")
def selective_copying(load_benchmark):
    return load_benchmark("selective_copying")


def test_make_batch_layout(selective_copying):
    gen = torch.Generator().manual_seed(0)
    tokens, targets = selective_copying.make_batch(64, 40, n_copy=6, n_data=8, generator=gen)
    assert tokens.shape == (64, 40) and targets.shape == (64, 6)
    noise, marker = selective_copying.NOISE, selective_copying.MARKER
    assert (tokens[:, -6:] == marker).all()
    body = tokens[:, :-6]
    assert ((body != noise).sum(1) == 6).all() and (body != marker).all()
    for row in range(64):  # data tokens appear in order, and those are the targets
        assert torch.equal(body[row][body[row] != noise] - 2, targets[row])
    assert targets.min() >= 0 and targets.max() <= 7
    positions = [tuple((b != noise).nonzero().flatten().tolist()) for b in body]
    assert len(set(positions)) > 60  # positions are random per sequence
    with pytest.raises(ValueError, match="seq_len"):
        selective_copying.make_batch(2, 10, n_copy=6)


@pytest.mark.slow
def test_mamba_solves_selective_copying_and_s4d_does_not(selective_copying):
    """A reduced run of benchmarks/selective_copying.py (short sequences, 4 tokens to copy): Mamba's
    input-dependent dynamics solve it, the time-invariant S4D stack of the same size stays far behind."""
    torch.manual_seed(0)
    stacks = selective_copying.backbones(d_model=64, n_layers=2)
    settings = dict(d_model=64, steps=400, seq_len=32, n_copy=4, n_data=8, batch_size=32, lr=3e-3, seed=0)
    mamba = selective_copying.train_copy(stacks["mamba"], **settings)
    s4d = selective_copying.train_copy(stacks["s4d"], **settings)
    assert mamba["accuracy"] > 0.9, mamba
    assert s4d["accuracy"] < mamba["accuracy"] - 0.25, (mamba, s4d)


def test_curriculum_trains_shorter_stages_first(selective_copying, monkeypatch):
    lengths = []
    make_batch = selective_copying.make_batch

    def recording(batch_size, seq_len, *args, **kwargs):
        lengths.append(seq_len)
        return make_batch(batch_size, seq_len, *args, **kwargs)

    monkeypatch.setattr(selective_copying, "make_batch", recording)
    backbone = selective_copying.backbones(d_model=8, n_layers=1)["s4d"]
    result = selective_copying.train_copy(backbone, d_model=8, steps=5, seq_len=24, n_copy=2, batch_size=2,
                                          n_eval=4, curriculum=[(8, 2), (16, 1)])
    assert lengths == [8, 8, 16, 24, 24, 24]  # five training batches, then the held-out one at seq_len
    assert 0.0 <= result["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="use all 3 steps"):
        selective_copying.train_copy(backbone, d_model=8, steps=3, seq_len=24, n_copy=2, curriculum=[(8, 3)])
