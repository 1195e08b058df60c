"""`shipway pipeline init`: a commented starter pipeline for `shipway.yaml`."""

from __future__ import annotations

from pathlib import Path

from shipway.errors import ConflictError
from shipway.pipeline.spec import parse_spec
from shipway.pipeline.yamlfile import SPEC_FILE

__all__ = ["STARTER", "write_starter"]

STARTER = """\
# The pipeline `shipway pipeline run` runs, from commit to production. Each stage is a
# built-in (`uses:`, options under `with:`) or a shell command (`run:`); stages run in order
# and the first failure stops the pipeline. Per stage, optional: `inputs:` (files that must
# exist), `outputs:` (files kept with the pipeline run), `when:` (branch: [main], env: [VAR]),
# `env:` and `timeout:` (e.g. 20m). Reference: docs/pipeline.md.
pipeline:
  model: {model}                  # the registered model this pipeline trains and ships
  stages:
    - name: test
      uses: test
      with: {{command: "python -m pytest -q"}}
    - name: lint
      uses: lint                  # ruff check
    - name: security
      uses: security              # bandit on the code, pip-audit on the environment
      with: {{severity: medium}}
    - name: train
      uses: train                 # must register a new version of the model
      with: {{command: "python train.py"}}
    - name: validate              # nothing is built or deployed unless every check passes
      uses: validate
      with:
        dataset: evaluation       # the held-out dataset the training run logged (or a file)
        label: {label}
        thresholds: {{roc_auc: ">= 0.75"}}
        # fairness: {{sensitive: gender, min_disparate_impact: 0.8}}
        champion: {{alias: champion, metric: roc_auc, min_delta: 0.0}}
    - name: build
      uses: build                 # image tagged with the model version and the commit
    - name: deploy-staging
      uses: deploy
      with: {{environment: staging}}
    - name: smoke
      uses: smoke
      with: {{environment: staging, requests: 20}}
    - name: gate
      uses: gate                  # the production approval policy decides (manual by default)
      with: {{environment: production}}
    - name: promote
      uses: promote               # canary into production, rolled back on bad error rate/latency
      with: {{environment: production, steps: "10,50,100", interval: 30s}}
      when: {{branch: [main]}}
"""


def write_starter(
    directory: Path, *, model: str = "model", label: str = "label", force: bool = False
) -> Path:
    """Add the starter pipeline to ``directory``'s shipway.yaml (created if absent); a file
    that has a pipeline already is left alone unless ``force``."""
    path = directory / SPEC_FILE
    text = STARTER.format(model=model, label=label)
    existing = path.read_text() if path.is_file() else ""
    if "\npipeline:" in f"\n{existing}":
        if not force:
            raise ConflictError(
                f"{path} has a pipeline already.", "Pass --force to replace the whole file."
            )
        existing = ""
    combined = f"{existing.rstrip()}\n\n{text}" if existing.strip() else text
    parse_spec(combined, path)  # the starter must always load
    path.write_text(combined)
    return path
