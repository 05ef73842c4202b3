"""``python -m robustlabels.experiments --suite NAME --out DIR``; see :func:`robustlabels.experiments.runner.main`."""

from robustlabels.experiments.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
