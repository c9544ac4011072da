"""Renders, lints and validates the Helm chart with the real Helm library, for
tests/it/helm_chart.rs. No cluster and no `helm` binary: helm-python-sdk binds Helm's Go
SDK, and kubernetes-validate holds the Kubernetes API schemas.

    python3 tests/helm/chart.py render CHART VALUES.json RELEASE NAMESPACE K8S_VERSION...
    python3 tests/helm/chart.py yaml-blocks FILE.md

Prints one JSON document. Failures of the chart (a template that fails, a value the schema
refuses) are data in that document, not errors of this script.
"""

import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml


def render(chart_dir, values_file, release, namespace, kube_versions):
    with open(values_file) as f:
        values = json.load(f)
    out = {"lint": [], "error": None, "objects": [], "notes": "", "invalid": [], "unknown_kinds": []}
    report = helm.lint(chart_dir, values, strict=True, namespace=namespace)
    # Severity 1 is information ("icon is recommended"); warnings fail under strict.
    out["lint"] = [m["error"] for m in report["messages"] if m["severity"] >= 2]
    try:
        with helm.Chart.load(chart_dir) as chart:
            manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
    except helm.HelmError as e:
        out["error"] = str(e)
        return out
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            out["notes"] = text
            continue
        for obj in yaml.safe_load_all(text):
            if not obj:
                continue
            out["objects"].append({"template": template, "object": obj})
            for version in kube_versions:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    if obj["kind"] not in out["unknown_kinds"]:
                        out["unknown_kinds"].append(obj["kind"])
                except kubernetes_validate.ValidationError as e:
                    name = obj.get("metadata", {}).get("name")
                    out["invalid"].append(f"{obj['kind']}/{name} on {version}: {e.caught.message}")
    return out


def yaml_blocks(markdown_file):
    """Every ```yaml block of a Markdown file, each as its list of documents."""
    blocks, current = [], None
    with open(markdown_file) as f:
        for line in f:
            if current is None and line.strip() == "```yaml":
                current = []
            elif current is not None and line.strip() == "```":
                blocks.append(list(yaml.safe_load_all("".join(current))))
                current = None
            elif current is not None:
                current.append(line)
    return blocks


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "render":
        result = render(args[0], args[1], args[2], args[3], args[4:])
    elif command == "yaml-blocks":
        result = yaml_blocks(args[0])
    else:
        sys.exit(f"unknown command {command}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
