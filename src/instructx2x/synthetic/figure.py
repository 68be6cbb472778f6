"""The README picture ``docs/img/demo_studies.png``: a few synthetic studies (PA, lateral, a finding
at two severities, AP with cardiomegaly). ``python -m instructx2x.synthetic.figure [PATH]``."""

from __future__ import annotations

import sys


def demo_figure(path: str = "docs/img/demo_studies.png") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import phantom, truth

    p = dict(lung_template=2, race_group="white", habitus=1.0, gender="M", age=60)
    M = truth.transform_matrix(0.0, 1.0, 0, 0, truth.REF_FRONTAL, (500, 420))

    def img(d):
        return phantom.acquire(d, M, (500, 420), 1.0, 1.0, 0.01, 1, False)

    def eff(rank):
        return [dict(finding="pleural effusion", side="left", zone=None, level_rank=rank)]

    panels = [
        ("PA, no finding", img(phantom.render_frontal(p, [], "PA", 5))),
        ("lateral", img(phantom.render_lateral(p, [], 6))),
        ("PA, small left effusion", img(phantom.render_frontal(p, eff(0), "PA", 5))),
        ("PA, large left effusion", img(phantom.render_frontal(p, eff(2), "PA", 5))),
        ("AP, moderate cardiomegaly", img(phantom.render_frontal(
            p, [dict(finding="cardiomegaly", side=None, zone=None, level_rank=1)], "AP", 5))),
    ]
    fig, ax = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.8))
    for a, (title, im) in zip(ax, panels):
        a.imshow(im, cmap="gray", vmin=0, vmax=255)
        a.set_title(title, fontsize=9)
        a.axis("off")
    fig.suptitle("Synthetic studies (patient's left = image right)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":  # pragma: no cover
    demo_figure(*sys.argv[1:])
