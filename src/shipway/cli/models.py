"""`shipway models list|show|alias|archive|lineage|card`."""

from __future__ import annotations

from typing import Any

import typer

from shipway.cli._output import JSON_OPTION, console, fmt, print_json, short, table

app = typer.Typer(help="The model registry.", no_args_is_help=True)

URI = typer.Argument(..., help="models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME.")


@app.command("list")
def list_(
    name: str | None = typer.Argument(None, help="Show the versions of this model."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List registered models, or the versions of one model."""
    from shipway import list_models, list_versions

    if name is not None:
        versions = list_versions(name.removeprefix("models:/"))
        if as_json:
            print_json([v.to_dict() for v in versions])
            return
        table(
            f"Versions of {name}",
            ["version", "aliases", "flavor", "run", "created", "by", "status"],
            [
                (
                    v.version,
                    ", ".join(v.aliases),
                    v.flavor,
                    short(v.run_id),
                    v.created_at,
                    v.created_by,
                    "[dim]archived[/dim]" if v.archived else "[green]live[/green]",
                )
                for v in versions
            ],
        )
        return
    models = list_models()
    if as_json:
        print_json([m.to_dict() for m in models])
        return
    table(
        "Models",
        ["model", "latest", "versions", "aliases", "created"],
        [
            (
                m.name,
                m.latest_version,
                m.versions,
                ", ".join(f"{a}→{v}" for a, v in m.aliases.items()),
                m.created_at,
            )
            for m in models
        ],
    )


def _sha(digest: str | None) -> str | None:
    return f"sha256:{short(digest.removeprefix('sha256:'))}" if digest else None


@app.command()
def show(uri: str = URI, as_json: bool = JSON_OPTION) -> None:
    """Show one model version: signature, card, aliases, provenance."""
    from shipway import get_model_version
    from shipway.packaging.images import list_images

    v = get_model_version(uri)
    if as_json:
        print_json(v.to_dict() | {"images": [i.to_dict() for i in list_images(v.uri)]})
        return
    state = "[dim]archived[/dim]" if v.archived else "[green]live[/green]"
    console.print(f"[bold]{v.uri}[/bold]  {state}  aliases: {', '.join(v.aliases) or '-'}")
    console.print(f"  flavor {v.flavor}, registered {fmt(v.created_at)} by {v.created_by}")
    console.print(f"  run {v.run_id or '-'}   manifest {v.manifest_digest}")
    for field in ("description", "intended_use", "limitations", "ethical_considerations"):
        if v.card.get(field):
            console.print(f"  {field.replace('_', ' ')}: {v.card[field]}")
    if v.signature:
        table(
            "Signature (inputs)",
            ["column", "dtype", "nullable", "categories"],
            [
                (c["name"], c["dtype"], c["nullable"], ", ".join(c.get("categories") or []) or None)
                for c in v.signature["inputs"]
            ],
        )
        out = v.signature.get("output")
        if out:
            console.print(
                f"  output: {out['dtype']} {out['shape']}"
                f"{', classes ' + str(out['classes']) if out.get('classes') else ''}"
            )
    if v.card.get("metrics"):
        table("Metrics", ["metric", "value"], sorted(v.card["metrics"].items()))
    built = list_images(v.uri)
    if built:
        table(
            "Images",
            ["tag", "image", "size", "base", "built", "pushed", "sbom pushed"],
            [
                (
                    i.tag,
                    short(i.image_id),
                    f"{i.size_bytes / 1e6:.0f} MB",
                    i.base_image,
                    i.created_at,
                    i.pushed_ref,
                    _sha(i.sbom_pushed_digest),
                )
                for i in built
            ],
            no_wrap=["tag", "image"],
        )


@app.command()
def alias(
    uri: str = typer.Argument(..., help="The version to point at, e.g. models:/credit/3."),
    name: str = typer.Argument(..., help="The alias: champion, challenger, staging, ..."),
    delete: bool = typer.Option(False, "--delete", help="Remove the alias instead."),
) -> None:
    """Point an alias at a version (or move it), or delete it with --delete."""
    from shipway import delete_alias, set_alias
    from shipway.registry.uri import parse

    if delete:
        ref = parse(uri)
        delete_alias(ref.name, name)
        console.print(f"Deleted alias [bold]{name}[/bold] of {ref.name}.")
        return
    v = set_alias(uri, name)
    console.print(f"[bold]{v.name}@{name}[/bold] → version {v.version}")


@app.command()
def archive(uri: str = URI) -> None:
    """Archive a version: kept for lineage, no longer the latest."""
    from shipway import archive_version

    v = archive_version(uri)
    console.print(f"Archived {v.uri}.")


@app.command()
def card(
    uri: str = URI,
    description: str | None = typer.Option(None),
    intended_use: str | None = typer.Option(None),
    limitations: str | None = typer.Option(None),
    ethical_considerations: str | None = typer.Option(None),
) -> None:
    """Edit the prose of a version's model card."""
    from shipway import update_model_card

    v = update_model_card(
        uri,
        description=description,
        intended_use=intended_use,
        limitations=limitations,
        ethical_considerations=ethical_considerations,
    )
    console.print(f"Updated the model card of {v.uri}.")


@app.command()
def lineage(uri: str = URI, as_json: bool = JSON_OPTION) -> None:
    """Where this version is live, and what made it: run, code, datasets, approvals."""
    from rich.tree import Tree

    from shipway import lineage as get_lineage

    data: dict[str, Any] = get_lineage(uri)
    if as_json:
        print_json(data)
        return
    m = data["model"]
    tree = Tree(
        f"[bold]models:/{m['name']}/{m['version']}[/bold]  "
        f"aliases: {', '.join(m['aliases']) or '-'}  digest {short(m['manifest_digest'])}"
    )
    run = data["run"]
    if run is None:
        tree.add("[dim]registered without a run[/dim]")
    else:
        r = tree.add(
            f"run [cyan]{run['id']}[/cyan] ({run['experiment']}, {run['status']}, "
            f"by {run['actor']}, {run['start_time'][:19]})"
        )
        if run["params"]:
            r.add("params: " + ", ".join(f"{k}={v}" for k, v in sorted(run["params"].items())))
        if run["metrics"]:
            r.add(
                "metrics: " + ", ".join(f"{k}={fmt(v)}" for k, v in sorted(run["metrics"].items()))
            )
    code = data["code"] or {}
    if code.get("commit"):
        dirty = (
            f" [yellow]dirty, diff {short(code.get('diff_digest'))}[/yellow]"
            if code.get("dirty")
            else " clean"
        )
        tree.add(f"code: commit {code['commit'][:12]}{dirty}")
    else:
        tree.add("code: [dim]not in a git repository[/dim]")
    ds = tree.add("datasets")
    for d in data["datasets"]:
        ds.add(
            f"{d['name']} ({d['role']}): {d['num_rows']} rows, sha256 {short(d['content_hash'])}"
        )
    env = data["environment"]
    pk = env.get("packages") or {}
    tree.add(
        f"environment: Python {env.get('python')} on {env.get('platform')}; "
        f"{pk.get('count')} packages (lock {short(pk.get('lock_digest'))})"
    )
    tree.add(f"seeds: {env.get('seeds')}")
    if data.get("images"):
        imgs = tree.add("images")
        for i in data["images"]:
            where = f", pushed {i['pushed_ref']}" if i["pushed_ref"] else ""
            if i.get("sbom_pushed_digest"):
                where += f", SBOM beside it {_sha(i['sbom_pushed_digest'])}"
            imgs.add(f"{i['tag']} ({short(i['image_id'])}, {i['size_bytes'] / 1e6:.0f} MB){where}")
    hist = tree.add("alias history")
    for h in data["alias_history"]:
        move = f"{h['from']} → {h['to']}" if h["from"] else f"→ {h['to']}"
        if h["action"] == "alias.delete":
            move = f"{h['from']} → deleted"
        hist.add(f"{h['time'][:19]}  {h['subject']}  {move}  by {h['actor']}")
    deps = tree.add("deployments")
    for d in data.get("deployments", []):
        here = "[green]this version[/]" if d["this_version"] else f"version {d['live_version']}"
        deps.add(
            f"{d['environment']}: {here} since {d['since'][:19]} ({d['status']}, {d['url']})"
        )
    approvals = tree.add("approvals")
    for a in data.get("approvals", []):
        by = f"policy {a['policy']}" if a.get("policy") else f"by {a.get('decided_by') or '-'}"
        approvals.add(
            f"{a['environment']}: {a['status']} {by} (asked by {a['requested_by']}, "
            f"{str(a['requested_at'])[:19]})"
        )
    pipe = data.get("pipeline")
    if pipe and pipe.get("missing"):
        tree.add(f"pipeline: run {pipe['id']} [dim](no longer recorded)[/dim]")
    elif pipe:
        marks = {"passed": "✓", "failed": "✗", "skipped": "↷"}
        stages = " ".join(f"{marks.get(st, '…')}{n}" for n, st in pipe["stages"].items())
        tree.add(f"pipeline: run {pipe['id']} ({pipe['trigger']}, {pipe['status']}): {stages}")
    mon = data.get("monitoring")
    if mon:
        drifted = ", ".join(mon["drifted_features"]) or "none"
        tree.add(
            f"monitoring: {mon['time'][:19]} on version {mon['version']}, {mon['rows']} rows; "
            f"drifted: {drifted}; worst alert: {mon['worst_alert'] or 'none'}"
        )
    else:
        tree.add("monitoring: [dim]no result yet[/dim]")
    console.print(tree)
