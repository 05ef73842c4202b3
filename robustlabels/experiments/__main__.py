"""``python -m robustlabels.experiments --suite NAME --out DIR``; see :func:`robustlabels.experiments.cli.main`."""

from robustlabels.experiments.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
