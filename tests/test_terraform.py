"""Checks of the Terraform module in ``terraform/``.

Three kinds of checks, none of which needs AWS or a provider download:

* static: every ``.tf`` file is parsed with python-hcl2 and the security-relevant settings are
  asserted on the parsed blocks (bucket encryption, public access block, TLS-only policy,
  lifecycle, least-privilege IAM, Athena, ECS);
* evaluated: ``terraform/modules/table-layout`` declares no provider, so ``terraform console``
  evaluates it offline; the Glue partition keys and projection it derives from a sink config
  are asserted for every partitioner;
* tools: ``terraform fmt -check`` and ``checkov`` (zero failed checks) when they are installed.

Seam for ``s3sink ddl``: :func:`terraform_table_layout` takes a sink config (the same keys as
``s3sink ddl -c CONFIG`` reads: ``format.class``, ``partitioner.class``, ``path.format``,
``partition.field.name``, ``topics.dir``, ``s3.bucket.name`` / ``storage.url``) and returns the
:class:`TableLayout` the Terraform Glue table gets: partition keys in path order, the projection
table properties, the location and the SerDe. A DDL test can assert, for the same config::

    layout = terraform_table_layout(config, topic="orders")
    create = sqlglot.parse_one(ddl_text, read="athena")
    assert partition_columns_of(create) == layout.partition_keys
    assert tblproperties_of(create) == layout.projection

:func:`glue_table_wiring` shows statically that the root module's ``aws_glue_catalog_table``
takes exactly those values from ``module.table_layout``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

# python-hcl2 (>= 8) is a dev dependency; imported dynamically so mypy needs no stubs for it.
hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is a dev dependency")
hcl2_utils = pytest.importorskip("hcl2.utils", reason="python-hcl2 >= 8 is needed")

REPO = Path(__file__).resolve().parent.parent
TF = REPO / "terraform"
TABLE_LAYOUT = TF / "modules" / "table-layout"
EXAMPLE = TF / "examples" / "basic"
MODULE_DIRS = (TF, TABLE_LAYOUT, EXAMPLE)

# ---------------------------------------------------------------------------------------------
# Parsing helpers

Body = dict[str, Any]


@cache
def load_module(directory: Path) -> dict[str, list[Any]]:
    """All top-level blocks of the ``.tf`` files of one module, merged by block type."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        parsed = hcl2.loads(
            path.read_text(),
            serialization_options=hcl2_utils.SerializationOptions(strip_string_quotes=True),
        )
        for key, value in parsed.items():
            if key.startswith("__"):
                continue
            merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def labelled(module: Mapping[str, list[Any]], kind: str, type_: str) -> dict[str, Body]:
    """``resource``/``data`` blocks of one type, by name."""
    out: dict[str, Body] = {}
    for block in module.get(kind, []):
        for name, body in block.get(type_, {}).items():
            out[name] = body
    return out


def resource(type_: str, name: str, module: Path = TF) -> Body:
    found = labelled(load_module(module), "resource", type_)
    assert name in found, f"resource {type_}.{name} missing in {module}"
    return found[name]


def data(type_: str, name: str, module: Path = TF) -> Body:
    found = labelled(load_module(module), "data", type_)
    assert name in found, f"data {type_}.{name} missing in {module}"
    return found[name]


def named(module: Path, kind: str) -> dict[str, Body]:
    """``variable``/``output``/``module`` blocks by name."""
    out: dict[str, Body] = {}
    for block in load_module(module).get(kind, []):
        out.update(block)
    return out


def locals_of(module: Path = TF) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in load_module(module).get("locals", []):
        out.update({k: v for k, v in block.items() if not k.startswith("__")})
    return out


def blocks(body: Body, name: str) -> list[Body]:
    """Nested blocks (static ones) of a block body."""
    value = body.get(name, [])
    return list(value) if isinstance(value, list) else [value]


def block(body: Body, name: str) -> Body:
    found = blocks(body, name)
    assert len(found) == 1, f"expected one {name} block, found {len(found)}"
    return found[0]


def dynamic(body: Body, name: str) -> Body | None:
    for d in blocks(body, "dynamic"):
        if name in d:
            inner: Body = d[name]
            return inner
    return None


def expr(value: Any) -> str:
    """An attribute as text: an expression ``${...}`` or a literal."""
    return value if isinstance(value, str) else json.dumps(value)


def statements(policy_document: Body) -> dict[str, Body]:
    out: dict[str, Body] = {}
    for st in blocks(policy_document, "statement"):
        out[st["sid"]] = st
    return out


def conditions(st: Body) -> list[tuple[str, str, list[str]]]:
    return [(c["test"], c["variable"], list(c["values"])) for c in blocks(st, "condition")]


# ---------------------------------------------------------------------------------------------
# Tools


def tool_env() -> dict[str, str]:
    """Environment for terraform/checkov: no version check calls, no platform downloads."""
    env = dict(os.environ)
    env["CHECKPOINT_DISABLE"] = "1"
    env["TF_IN_AUTOMATION"] = "1"
    env["BC_SKIP_MAPPING"] = "TRUE"
    env.pop("TF_CLI_CONFIG_FILE", None)
    env["TF_CLI_CONFIG_FILE"] = os.devnull
    return env


def find_tool(name: str, env_var: str) -> str | None:
    """``$<env_var>``, the tool next to this Python (the venv), or on PATH."""
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def terraform_bin() -> str:
    found = find_tool("terraform", "TERRAFORM")
    if found is None:
        pytest.skip("terraform is not installed (set $TERRAFORM or put it on PATH)")
    return found


# ---------------------------------------------------------------------------------------------
# The seam for `s3sink ddl`: evaluate the table layout for a sink config


@dataclass(frozen=True)
class TableLayout:
    partitioner: str
    format: str
    location: str
    #: ``(name, type)`` in path order, as Glue gets them.
    partition_keys: list[tuple[str, str]]
    #: Athena table properties: ``projection.*`` and ``storage.location.template``.
    projection: dict[str, str]
    #: All Glue table parameters (``EXTERNAL``, ``classification`` and the projection).
    table_parameters: dict[str, str]
    input_format: str
    output_format: str
    serde: str
    serde_parameters: dict[str, str]


_WRAPPER = """
variable "layout" {
  type = any
}

module "layout" {
  source                 = "%s"
  bucket                 = var.layout.bucket
  key_prefix             = var.layout.key_prefix
  topics_dir             = var.layout.topics_dir
  topic                  = var.layout.topic
  format                 = var.layout.format
  partitioner            = var.layout.partitioner
  path_format            = var.layout.path_format
  partition_field_names  = var.layout.partition_field_names
  partition_field_values = var.layout.partition_field_values
  kafka_partition_count  = var.layout.kafka_partition_count
  projection_start_year  = var.layout.projection_start_year
  projection_end_year    = var.layout.projection_end_year
  avro_schema_literal    = var.layout.avro_schema_literal
}
"""


class TerraformError(Exception):
    pass


@cache
def _console_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.tf").write_text(_WRAPPER % TABLE_LAYOUT.as_posix())
    subprocess.run(
        [terraform_bin(), "init", "-input=false", "-no-color"],
        cwd=root,
        env=tool_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return root


def _bucket_and_prefix(config: Mapping[str, str]) -> tuple[str, str]:
    url = config.get("storage.url")
    if url:
        m = re.fullmatch(r"s3://([^/]+)/?(.*)", url)
        assert m, f"storage.url {url!r} is not s3://bucket/prefix"
        return m.group(1), m.group(2).strip("/")
    return config.get("s3.bucket.name", "bucket"), ""


def terraform_table_layout(
    config: Mapping[str, str],
    *,
    topic: str,
    kafka_partition_count: int = 100,
    partition_field_values: Mapping[str, list[str]] | None = None,
    projection_start_year: int = 2020,
    projection_end_year: int = 2050,
    avro_schema_literal: str | None = None,
    workdir: Path | None = None,
) -> TableLayout:
    """The Glue table layout Terraform creates for ``topic`` under a sink ``config``.

    Evaluates ``terraform/modules/table-layout`` with ``terraform console`` (offline: the module
    has no provider). Raises :class:`TerraformError` with Terraform's message when the module
    rejects the config.
    """
    bucket, prefix = _bucket_and_prefix(config)
    fields = [f.strip() for f in config.get("partition.field.name", "").split(",") if f.strip()]
    layout = {
        "bucket": bucket,
        "key_prefix": prefix,
        "topics_dir": config.get("topics.dir", "topics"),
        "topic": topic,
        "format": config.get("format.class", "parquet"),
        "partitioner": config.get("partitioner.class", "default"),
        "path_format": config.get("path.format", "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"),
        "partition_field_names": fields,
        "partition_field_values": dict(partition_field_values or {}),
        "kafka_partition_count": kafka_partition_count,
        "projection_start_year": projection_start_year,
        "projection_end_year": projection_end_year,
        "avro_schema_literal": avro_schema_literal,
    }
    root = _console_dir((workdir or REPO / ".cache" / "terraform-table-layout").resolve())
    varfile = root / "layout.tfvars.json"
    varfile.write_text(json.dumps({"layout": layout}))
    proc = subprocess.run(
        [terraform_bin(), "console", "-no-color", f"-var-file={varfile.name}"],
        cwd=root,
        env=tool_env(),
        check=False,
        input="jsonencode(module.layout)\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    # A failed validation or precondition leaves the value unknown and reports on stderr.
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or "Error:" in proc.stderr or not last.startswith('"'):
        raise TerraformError(proc.stderr.strip() or proc.stdout.strip())
    out = json.loads(json.loads(last))
    storage = out["storage"]
    table_parameters = dict(out["table_parameters"])
    return TableLayout(
        partitioner=out["partitioner"],
        format=out["format"],
        location=out["location"],
        partition_keys=[(k["name"], k["type"]) for k in out["partition_keys"]],
        projection=dict(out["projection_parameters"]),
        table_parameters=table_parameters,
        input_format=storage["input_format"],
        output_format=storage["output_format"],
        serde=storage["serialization_library"],
        serde_parameters=dict(storage["serde_parameters"]),
    )


def glue_table_wiring() -> dict[str, str]:
    """Where the root module's Glue table takes each setting from (expressions, unevaluated)."""
    table = resource("aws_glue_catalog_table", "topic")
    sd = block(table, "storage_descriptor")
    serde = block(sd, "ser_de_info")
    keys = dynamic(table, "partition_keys")
    assert keys is not None, "partition_keys must come from module.table_layout"
    content = block(keys, "content")
    return {
        "for_each": expr(table["for_each"]),
        "parameters": expr(table["parameters"]),
        "partition_keys": expr(keys["for_each"]),
        "partition_key_name": expr(content["name"]),
        "partition_key_type": expr(content["type"]),
        "location": expr(sd["location"]),
        "input_format": expr(sd["input_format"]),
        "output_format": expr(sd["output_format"]),
        "serde": expr(serde["serialization_library"]),
        "serde_parameters": expr(serde["parameters"]),
    }


def block_text(path: Path, kind: str, name: str) -> str:
    """The source of the top-level block ``<kind> "<name>" { ... }`` of a ``.tf`` file, verbatim
    (strings, heredocs and comments are skipped while matching braces)."""
    text = path.read_text()
    m = re.search(rf'^{kind}\s+"{re.escape(name)}"\s*\{{', text, re.M)
    assert m, f'{path}: no {kind} "{name}"'
    depth, i = 0, m.end() - 1
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "#" or text.startswith("//", i):
            i = text.index("\n", i)
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 1
        elif heredoc := re.match(r"<<-?([A-Za-z_]+)\n", text[i:]):
            end = re.compile(rf"^\s*{heredoc.group(1)}$", re.M).search(text, i + heredoc.end())
            assert end, f"{path}: unterminated heredoc"
            i = end.end()
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[m.start() : i + 1]
        i += 1
    raise AssertionError(f'{path}: {kind} "{name}" is not closed')


def tables_validation_error(tables: Mapping[str, Any], workdir: Path) -> str | None:
    """Terraform's message when the root module's ``tables`` variable rejects ``tables``, or None
    when every validation passes. The declaration is copied verbatim from ``variables.tf`` into
    a provider-less module, where ``terraform console`` evaluates it offline."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "variables.tf").write_text(block_text(TF / "variables.tf", "variable", "tables"))
    varfile = workdir / "tables.tfvars.json"
    varfile.write_text(json.dumps({"tables": tables}))
    proc = subprocess.run(
        [terraform_bin(), "console", "-no-color", f"-var-file={varfile.name}"],
        cwd=workdir,
        env=tool_env(),
        check=False,
        input="length(var.tables)\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0 or "Error:" in proc.stderr:
        return proc.stderr.strip() or proc.stdout.strip()
    assert proc.stdout.strip().splitlines()[-1] == str(len(tables)), proc.stdout
    return None


@pytest.fixture(scope="module")
def layout_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    terraform_bin()
    return tmp_path_factory.mktemp("table-layout")


# ---------------------------------------------------------------------------------------------
# Files, formatting, variables


def test_every_tf_file_parses_and_modules_pin_versions() -> None:
    files = sorted(TF.rglob("*.tf"))
    assert len(files) >= 10
    for directory in MODULE_DIRS:
        terraform_blocks = load_module(directory).get("terraform", [])
        assert terraform_blocks, f"{directory}: no terraform block"
        assert any("required_version" in b for b in terraform_blocks), directory
    root = load_module(TF)["terraform"][0]
    aws = root["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert re.fullmatch(r">= 5\.\d+, < \d+\.0", aws["version"]), aws["version"]
    # The table layout stays provider-free so it can be evaluated offline.
    assert "required_providers" not in load_module(TABLE_LAYOUT)["terraform"][0]


def test_terraform_fmt() -> None:
    proc = subprocess.run(
        [terraform_bin(), "fmt", "-check", "-recursive", "-diff", "-no-color", str(TF)],
        env=tool_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("directory", [TF, TABLE_LAYOUT], ids=["root", "table-layout"])
def test_variables_are_described_typed_and_validated(directory: Path) -> None:
    unvalidated_ok = {"tags", "partition_field_values"}
    variables = named(directory, "variable")
    assert variables
    for name, body in variables.items():
        assert len(body.get("description", "")) > 20, f"variable {name}: no description"
        assert "type" in body, f"variable {name}: no type"
        if expr(body["type"]) in {"${bool}", "bool"} or name in unvalidated_ok:
            continue
        assert blocks(body, "validation"), f"variable {name}: no validation block"
        for v in blocks(body, "validation"):
            assert v["condition"] and len(v["error_message"]) > 20, name


def test_outputs_are_described() -> None:
    for directory in MODULE_DIRS:
        for name, body in named(directory, "output").items():
            assert len(body.get("description", "")) > 10, f"{directory}: output {name}"
    outputs = named(TF, "output")
    for needed in (
        "bucket_name",
        "kms_key_arn",
        "sink_policy_arn",
        "task_role_arn",
        "glue_database_name",
        "glue_table_names",
        "athena_workgroup_name",
        "ecs_service_name",
        "log_group_name",
        "sink_config",
    ):
        assert needed in outputs, needed


# ---------------------------------------------------------------------------------------------
# Bucket


def test_bucket_encryption_is_sse_kms_with_bucket_key() -> None:
    sse = resource("aws_s3_bucket_server_side_encryption_configuration", "this")
    rule = block(sse, "rule")
    default = block(rule, "apply_server_side_encryption_by_default")
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${local.kms_key_arn}"
    assert rule["bucket_key_enabled"] is True
    kms_key_arn = locals_of()["kms_key_arn"]
    assert "aws_kms_key.this[0].arn" in kms_key_arn and "var.kms_key_arn" in kms_key_arn


def test_created_kms_key_rotates_and_has_no_public_principal() -> None:
    key = resource("aws_kms_key", "this")
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == "${var.kms_key_deletion_window_in_days}"
    policy = expr(key["policy"])
    assert 'Principal = "*"' not in policy and 'AWS = "*"' not in policy
    assert "logs.${local.region}.amazonaws.com" in policy
    assert "kms:EncryptionContext:aws:logs:arn" in policy


def test_public_access_is_blocked_and_acls_disabled() -> None:
    pab = resource("aws_s3_bucket_public_access_block", "this")
    for setting in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert pab[setting] is True, setting
    ownership = resource("aws_s3_bucket_ownership_controls", "this")
    assert block(ownership, "rule")["object_ownership"] == "BucketOwnerEnforced"


def test_bucket_policy_denies_non_tls() -> None:
    policy = resource("aws_s3_bucket_policy", "this")
    assert policy["policy"] == "${data.aws_iam_policy_document.bucket.json}"
    sts = statements(data("aws_iam_policy_document", "bucket"))
    insecure = sts["DenyInsecureTransport"]
    assert insecure["effect"] == "Deny"
    assert insecure["actions"] == ["s3:*"]
    assert set(insecure["resources"]) == {
        "${aws_s3_bucket.this.arn}",
        "${aws_s3_bucket.this.arn}/*",
    }
    principal = block(insecure, "principals")
    assert principal["type"] == "*" and principal["identifiers"] == ["*"]
    assert conditions(insecure) == [("Bool", "aws:SecureTransport", ["false"])]
    old_tls = sts["DenyOutdatedTLS"]
    assert old_tls["effect"] == "Deny"
    assert conditions(old_tls) == [("NumericLessThan", "s3:TlsVersion", ["1.2"])]
    assert all(st["effect"] == "Deny" for st in sts.values()), "the bucket policy only denies"


def test_versioning_is_a_documented_variable() -> None:
    versioning = resource("aws_s3_bucket_versioning", "this")
    status = expr(block(versioning, "versioning_configuration")["status"])
    assert "var.versioning_enabled" in status
    variable = named(TF, "variable")["versioning_enabled"]
    assert variable["default"] is True
    assert "noncurrent" in variable["description"]


def test_key_layout_locals_match_the_sink() -> None:
    loc = locals_of()
    assert loc["data_prefix"] == "${local.prefix}${var.topics_dir}/"
    assert loc["state_prefix"] == "${local.prefix}_s3sink/"
    assert loc["staging_prefix"] == "${local.prefix}_s3sink/staging/"
    assert loc["athena_results_prefix"].startswith("${local.prefix}_athena/")


def test_lifecycle_rules() -> None:
    lifecycle = resource("aws_s3_bucket_lifecycle_configuration", "this")
    assert dynamic(lifecycle, "rule") is None, "static rules keep checkov and the order honest"
    rules = {r["id"]: r for r in blocks(lifecycle, "rule")}

    abort = rules["abort-incomplete-multipart-uploads"]
    assert abort["status"] == "Enabled"
    assert block(abort, "filter") == {"__is_block__": True}  # whole bucket, staging included
    assert (
        block(abort, "abort_incomplete_multipart_upload")["days_after_initiation"]
        == "${var.abort_incomplete_multipart_upload_days}"
    )

    staging = rules["expire-staging"]
    assert staging["status"] == "Enabled"
    assert block(staging, "filter")["prefix"] == "${local.staging_prefix}"
    assert block(staging, "expiration")["days"] == "${var.staging_expiration_days}"

    archive = rules["archive-data"]
    assert block(archive, "filter")["prefix"] == "${local.data_prefix}"
    assert "var.archive_transition_days" in archive["status"]
    transition = block(archive, "transition")
    assert transition["storage_class"] == "${var.archive_storage_class}"
    assert "var.archive_transition_days" in transition["days"]

    expire = rules["expire-data"]
    assert block(expire, "filter")["prefix"] == "${local.data_prefix}"
    assert "var.data_expiration_days" in expire["status"]

    results = rules["expire-athena-results"]
    assert block(results, "filter")["prefix"] == "${local.athena_results_prefix}"

    noncurrent = rules["expire-noncurrent-versions"]
    assert "var.versioning_enabled" in noncurrent["status"]

    # No rule may touch the commit log: _s3sink/log/ is the record of what was archived.
    for rule in rules.values():
        for f in blocks(rule, "filter"):
            assert "log" not in str(f.get("prefix", "")), rule["id"]

    variables = named(TF, "variable")
    assert variables["archive_storage_class"]["default"] == "GLACIER_IR"
    assert variables["staging_expiration_days"]["default"] == 7
    assert variables["abort_incomplete_multipart_upload_days"]["default"] == 7


# ---------------------------------------------------------------------------------------------
# IAM


SINK_ACTIONS = {
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "kms:GenerateDataKey",
    "kms:Decrypt",
}
BUCKET = "${aws_s3_bucket.this.arn}"
DATA = "${aws_s3_bucket.this.arn}/${local.data_prefix}*"
STATE = "${aws_s3_bucket.this.arn}/${local.state_prefix}*"
STAGING = "${aws_s3_bucket.this.arn}/${local.staging_prefix}*"


def test_sink_policy_is_least_privilege() -> None:
    sts = statements(data("aws_iam_policy_document", "sink"))
    actions = [a for st in sts.values() for a in st["actions"]]
    assert sorted(actions) == sorted(SINK_ACTIONS), "exactly the needed actions, each once"
    for st in sts.values():
        assert st["effect"] == "Allow"
        assert not any("*" in a for a in st["actions"]), st["sid"]
        assert all(r != "*" for r in st["resources"]), st["sid"]
        assert "not_actions" not in st and "not_resources" not in st

    by_action = {a: st for st in sts.values() for a in st["actions"]}
    listing = by_action["s3:ListBucket"]
    assert listing["resources"] == [BUCKET]
    assert conditions(listing) == [
        ("StringLike", "s3:prefix", ["${local.data_prefix}*", "${local.state_prefix}*"])
    ]
    assert by_action["s3:ListBucketMultipartUploads"]["resources"] == [BUCKET]
    for action in ("s3:GetObject", "s3:PutObject"):
        assert set(by_action[action]["resources"]) == {DATA, STATE}, action
    for action in ("s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"):
        assert set(by_action[action]["resources"]) == {DATA, STAGING}, action
    # The sink deletes its staging files and nothing else.
    assert by_action["s3:DeleteObject"]["resources"] == [STAGING]
    kms = by_action["kms:GenerateDataKey"]
    assert kms is by_action["kms:Decrypt"]
    assert kms["resources"] == ["${local.kms_key_arn}"]
    assert conditions(kms) == [
        ("StringEquals", "kms:ViaService", ["s3.${local.region}.amazonaws.com"])
    ]

    policy = resource("aws_iam_policy", "sink")
    assert policy["policy"] == "${data.aws_iam_policy_document.sink.json}"


def test_ecs_roles() -> None:
    trust = statements(data("aws_iam_policy_document", "ecs_tasks_assume"))
    (st,) = trust.values()
    assert st["actions"] == ["sts:AssumeRole"]
    assert block(st, "principals")["identifiers"] == ["ecs-tasks.amazonaws.com"]
    assert ("StringEquals", "aws:SourceAccount", ["${local.account_id}"]) in conditions(st)

    task = resource("aws_iam_role", "task")
    execution = resource("aws_iam_role", "execution")
    for role in (task, execution):
        assert role["assume_role_policy"] == "${data.aws_iam_policy_document.ecs_tasks_assume.json}"
    attach = resource("aws_iam_role_policy_attachment", "task_sink")
    assert attach["policy_arn"] == "${aws_iam_policy.sink.arn}"
    assert attach["role"] == "${aws_iam_role.task[0].name}"

    secrets = data("aws_iam_policy_document", "execution_secrets")
    granted: set[str] = set()
    for d in blocks(secrets, "dynamic"):
        content = block(d["statement"], "content")
        granted.update(content["actions"])
        assert content["resources"] == "${statement.value}"
    assert granted == {"ssm:GetParameters", "secretsmanager:GetSecretValue", "kms:Decrypt"}


# ---------------------------------------------------------------------------------------------
# Glue and Athena


def test_glue_table_takes_layout_from_the_table_layout_module() -> None:
    wiring = glue_table_wiring()
    assert wiring == {
        "for_each": "${var.tables}",
        "parameters": "${module.table_layout[each.key].table_parameters}",
        "partition_keys": "${module.table_layout[each.key].partition_keys}",
        "partition_key_name": "${partition_keys.value.name}",
        "partition_key_type": "${partition_keys.value.type}",
        "location": "${module.table_layout[each.key].location}",
        "input_format": "${module.table_layout[each.key].storage.input_format}",
        "output_format": "${module.table_layout[each.key].storage.output_format}",
        "serde": "${module.table_layout[each.key].storage.serialization_library}",
        "serde_parameters": "${module.table_layout[each.key].storage.serde_parameters}",
    }
    table = resource("aws_glue_catalog_table", "topic")
    assert table["table_type"] == "EXTERNAL_TABLE"
    columns = dynamic(block(table, "storage_descriptor"), "columns")
    assert columns is not None and columns["for_each"] == "${each.value.columns}"

    call = named(TF, "module")["table_layout"]
    assert call["source"] == "./modules/table-layout"
    assert call["for_each"] == "${var.tables}"
    for arg in ("partitioner", "path_format", "format", "topics_dir", "key_prefix"):
        assert call[arg] == "${var." + arg + "}", arg
    assert call["bucket"] == "${local.bucket_name}"
    assert call["topic"] == "${each.key}"


def test_glue_tables_live_in_the_module_s_glue_database() -> None:
    database = resource("aws_glue_catalog_database", "this")
    assert database["name"] == "${local.glue_database_name}"
    assert "glue_database_name" in locals_of(TF)
    table = resource("aws_glue_catalog_table", "topic")
    assert table["database_name"] == "${aws_glue_catalog_database.this.name}"
    assert "aws_glue_catalog_database.this" in expr(named(TF, "output")["glue_database_name"])


def test_tables_variable_takes_hive_column_types_only(tmp_path: Path) -> None:
    """Glue tables are read by Athena with Hive DDL types; other spellings are refused."""
    terraform_bin()

    def table(*types: str) -> dict[str, Any]:
        columns = [{"name": f"c{i}", "type": t} for i, t in enumerate(types)]
        return {"orders": {"columns": columns}}

    hive = ("bigint", "INT", "decimal(12, 2)", "varchar(20)", "map<string,array<struct<a:int>>>")
    assert tables_validation_error(table(*hive), tmp_path) is None
    for other in ("varchar", "array(bigint)", "blob"):  # Trino spellings, a typo
        error = tables_validation_error(table("bigint", other), tmp_path)
        assert error is not None and "must be Hive DDL types" in " ".join(error.split()), other
    assert tables_validation_error({"orders": {"columns": []}}, tmp_path) is not None


def test_partitioner_and_format_names_match_s3sink() -> None:
    import formats
    import partitioners

    loc = locals_of(TABLE_LAYOUT)
    assert loc["confluent_partitioners"] == partitioners.ALIASES
    assert loc["confluent_formats"] == {
        k: v for k, v in formats.ALIASES.items() if v in {"parquet", "json", "avro"}
    }


def test_athena_workgroup_enforces_encrypted_results() -> None:
    wg = resource("aws_athena_workgroup", "this")
    conf = block(wg, "configuration")
    assert conf["enforce_workgroup_configuration"] is True
    assert conf["publish_cloudwatch_metrics_enabled"] is True
    results = block(conf, "result_configuration")
    assert results["output_location"] == (
        "s3://${aws_s3_bucket.this.bucket}/${local.athena_results_prefix}"
    )
    enc = block(results, "encryption_configuration")
    assert enc["encryption_option"] == "SSE_KMS"
    assert enc["kms_key_arn"] == "${local.kms_key_arn}"
    assert block(conf, "engine_version")["selected_engine_version"] == "Athena engine version 3"


# ---------------------------------------------------------------------------------------------
# ECS


def _dockerfile_instructions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def test_task_definition_runs_the_image_variable_as_non_root() -> None:
    td = resource("aws_ecs_task_definition", "sink")
    assert td["requires_compatibilities"] == ["FARGATE"]
    assert td["network_mode"] == "awsvpc"
    assert td["container_definitions"] == "${jsonencode([local.container_definition])}"
    assert td["task_role_arn"] == "${aws_iam_role.task[0].arn}"
    assert td["execution_role_arn"] == "${aws_iam_role.execution[0].arn}"

    loc = locals_of()
    container = loc["container_definition"]
    assert container["image"] == "${var.container_image}"
    assert container["user"] == "${local.container_user}"
    user = loc["container_user"]
    assert not re.match(r"^(0|root)(:|$)", user)
    dockerfile = _dockerfile_instructions()
    assert dockerfile["USER"][-1] == user, "task definition and image run as the same user"
    assert container["readonlyRootFilesystem"] is True
    assert container["essential"] is True
    assert container["environment"] == "${local.container_environment}"
    assert container["secrets"] == "${local.container_secrets}"
    assert container["stopTimeout"] == "${var.stop_timeout}"
    assert container["linuxParameters"]["initProcessEnabled"] is True
    assert container["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "${local.log_group_name}"
    # Same command and health check as the image.
    assert json.loads(dockerfile["CMD"][-1]) == container["command"]
    health = json.loads(dockerfile["HEALTHCHECK"][-1].split(" CMD ", 1)[1])
    assert container["healthCheck"]["command"] == ["CMD", *health]

    # Secrets only through `secrets` (valueFrom), never in the plain environment.
    assert "var.sink_secrets" in loc["container_secrets"]
    assert "valueFrom" in loc["container_secrets"]
    assert "var.sink_secrets" not in loc["container_environment"]
    assert "var.sink_secrets" not in expr(loc["sink_config"])


def test_sink_config_keys_are_known_to_s3sink() -> None:
    from s3sink import config

    sink_config = expr(locals_of()["sink_config"])
    keys = set(re.findall(r'"([a-z0-9]+(?:\.[a-z0-9]+)*)"\s*=', sink_config))
    assert {"topics", "s3.bucket.name", "storage.url", "format.class", "http.listen"} <= keys
    unknown = keys - set(config.KEY_FIELDS)
    assert not unknown, f"keys s3sink does not know: {unknown}"

    # The module derives these; sink_config refuses them. They must be real keys too.
    validations = named(TF, "variable")["sink_config"]["validation"]
    reserved = set(re.findall(r'"([a-z0-9.]+)"', validations[1]["condition"]))
    assert reserved and reserved <= set(config.KEY_FIELDS), reserved - set(config.KEY_FIELDS)
    assert keys <= reserved, "every derived key is protected from sink_config"

    # S3SINK_ + upper(replace(key, ".", "_")) maps back to the key in s3sink's loader.
    for key in keys | {"flush.size", "rotate.interval.ms", "consumer.sasl.password"}:
        env_name = "S3SINK_" + key.upper().replace(".", "_")
        assert config.env_overrides({env_name: "x"}) == {key: "x"}, key
    env_map = expr(locals_of()["container_environment"])
    assert 'S3SINK_${upper(replace(key, ".", "_"))}' in env_map


def test_example_sink_config_keys_are_known_to_s3sink() -> None:
    from s3sink import config

    text = (EXAMPLE / "main.tf").read_text()
    keys = set(re.findall(r'"((?:[a-z0-9]+\.)+[a-z0-9]+)"\s*=', text))
    assert keys
    for key in keys:
        assert key in config.KEY_FIELDS or key.startswith(config.PASSTHROUGH_PREFIXES), key


def test_log_group_is_encrypted_with_retention() -> None:
    lg = resource("aws_cloudwatch_log_group", "sink")
    assert lg["retention_in_days"] == "${var.log_retention_days}"
    assert lg["kms_key_id"] == "${local.kms_key_arn}"
    assert lg["name"] == "${local.log_group_name}"


def test_security_group_has_egress_only() -> None:
    sg = resource("aws_security_group", "sink")
    assert "ingress" not in sg and dynamic(sg, "ingress") is None
    egress = blocks(sg, "egress")
    assert len(egress) == 2
    for rule in egress:
        assert rule["protocol"] == "tcp" and rule["description"]
    ports = {(r["from_port"], r["to_port"]) for r in egress}
    assert (443, 443) in ports
    assert ("${var.kafka_port_range.from}", "${var.kafka_port_range.to}") in ports
    assert not labelled(load_module(TF), "resource", "aws_security_group_rule")
    assert not labelled(load_module(TF), "resource", "aws_vpc_security_group_ingress_rule")


def test_ecs_service() -> None:
    svc = resource("aws_ecs_service", "sink")
    assert svc["launch_type"] == "FARGATE"
    assert svc["platform_version"] == "LATEST"
    assert svc["enable_execute_command"] is False
    assert block(svc, "deployment_circuit_breaker") == {
        "__is_block__": True,
        "enable": True,
        "rollback": True,
    }
    net = block(svc, "network_configuration")
    assert net["assign_public_ip"] == "${var.assign_public_ip}"
    assert named(TF, "variable")["assign_public_ip"]["default"] is False
    cluster = resource("aws_ecs_cluster", "this")
    assert block(cluster, "setting") == {
        "__is_block__": True,
        "name": "containerInsights",
        "value": "enabled",
    }


def test_example_calls_the_module() -> None:
    call = named(EXAMPLE, "module")["s3sink"]
    assert call["source"] == "../.."
    for required in ("topics", "container_image", "vpc_id", "subnet_ids", "tables"):
        assert required in call, required
    root_variables = named(TF, "variable")
    for arg in call:
        if not arg.startswith("__") and arg != "source":
            assert arg in root_variables, f"example passes unknown variable {arg}"
    providers = load_module(EXAMPLE).get("provider", [])
    assert providers and "aws" in providers[0]


# ---------------------------------------------------------------------------------------------
# checkov


SKIP = re.compile(r"#checkov:skip=(CKV2?_[A-Z0-9_]+):(.*)")


def test_checkov_skips_are_justified() -> None:
    skips: list[tuple[str, str]] = []
    for path in TF.rglob("*.tf"):
        skips += SKIP.findall(path.read_text())
    assert skips, "expected the documented skips"
    for check, reason in skips:
        assert len(reason.strip()) >= 40, f"{check}: justify the skip"
    assert len({c for c, _ in skips}) == len(skips), "each check skipped once"


def test_checkov_passes() -> None:
    checkov = find_tool("checkov", "CHECKOV")
    if checkov is None:
        pytest.skip("checkov is not installed (set $CHECKOV or put it on PATH)")
    proc = subprocess.run(
        [
            checkov,
            "--directory",
            str(TF),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
            "--quiet",
        ],
        env=tool_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = reports[0]["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} {c['file_path']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert summary["failed"] == 0 and not failed, "\n".join(failed)
    assert summary["passed"] > 50
    assert proc.returncode == 0


# ---------------------------------------------------------------------------------------------
# The table layout, evaluated


def _layout(layout_dir: Path, config: Mapping[str, str], **kwargs: Any) -> TableLayout:
    return terraform_table_layout(config, topic="orders", workdir=layout_dir, **kwargs)


def test_default_partitioner_projects_kafka_partitions(layout_dir: Path) -> None:
    got = _layout(
        layout_dir,
        {"s3.bucket.name": "archive", "partitioner.class": "default"},
        kafka_partition_count=12,
    )
    assert got.partitioner == "default"
    assert got.location == "s3://archive/topics/orders/"
    assert got.partition_keys == [("partition", "int")]
    assert got.projection == {
        "projection.enabled": "true",
        "projection.partition.type": "integer",
        "projection.partition.range": "0,11",
        "storage.location.template": "s3://archive/topics/orders/partition=${partition}/",
    }
    assert got.table_parameters["classification"] == "parquet"
    assert got.table_parameters["EXTERNAL"] == "TRUE"
    assert got.serde == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


@pytest.mark.parametrize(
    "partitioner",
    ["hourly", "io.confluent.connect.storage.partitioner.HourlyPartitioner", "time"],
)
def test_hourly_paths_project_zero_padded_integers(layout_dir: Path, partitioner: str) -> None:
    got = _layout(
        layout_dir,
        {
            "storage.url": "s3://archive/prod/eu",
            "topics.dir": "kafka",
            "partitioner.class": partitioner,
            "path.format": "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH",
        },
    )
    assert got.partition_keys == [
        ("year", "string"),
        ("month", "string"),
        ("day", "string"),
        ("hour", "string"),
    ]
    assert got.location == "s3://archive/prod/eu/kafka/orders/"
    assert got.projection == {
        "projection.enabled": "true",
        "projection.year.type": "integer",
        "projection.year.range": "2020,2050",
        "projection.month.type": "integer",
        "projection.month.range": "1,12",
        "projection.month.digits": "2",
        "projection.day.type": "integer",
        "projection.day.range": "1,31",
        "projection.day.digits": "2",
        "projection.hour.type": "integer",
        "projection.hour.range": "0,23",
        "projection.hour.digits": "2",
        "storage.location.template": "s3://archive/prod/eu/kafka/orders/"
        "year=${year}/month=${month}/day=${day}/hour=${hour}/",
    }


def test_daily_partitioner_ignores_path_format(layout_dir: Path) -> None:
    got = _layout(layout_dir, {"partitioner.class": "daily", "path.format": "'x'=HH"})
    assert [k for k, _ in got.partition_keys] == ["year", "month", "day"]


def test_composite_time_segment_is_a_date_projection(layout_dir: Path) -> None:
    got = _layout(
        layout_dir,
        {"partitioner.class": "time", "path.format": "'dt'=YYYY-MM-dd/'hour'=HH"},
        projection_start_year=2023,
    )
    assert got.partition_keys == [("dt", "string"), ("hour", "string")]
    assert got.projection["projection.dt.type"] == "date"
    # Joda's YYYY (year of era) is java.time's yyyy (YYYY there is the week-based year).
    assert got.projection["projection.dt.format"] == "yyyy-MM-dd"
    assert got.projection["projection.dt.range"] == "2023-01-01,NOW"
    assert got.projection["projection.dt.interval"] == "1"
    assert got.projection["projection.dt.interval.unit"] == "DAYS"
    assert got.projection["projection.hour.type"] == "integer"
    assert got.projection["storage.location.template"].endswith("/dt=${dt}/hour=${hour}/")


def test_composite_hour_segment_steps_hourly(layout_dir: Path) -> None:
    got = _layout(layout_dir, {"partitioner.class": "time", "path.format": "'ts'=yyyyMMddHH"})
    assert got.projection["projection.ts.format"] == "yyyyMMddHH"
    assert got.projection["projection.ts.range"] == "2020010100,NOW"
    assert got.projection["projection.ts.interval.unit"] == "HOURS"


def test_field_partitioner_projects_enum_or_injected(layout_dir: Path) -> None:
    got = _layout(
        layout_dir,
        {"partitioner.class": "field", "partition.field.name": "country,customerTier"},
        partition_field_values={"country": ["FR", "DE", "US"]},
    )
    assert got.partition_keys == [("country", "string"), ("customertier", "string")]
    assert got.projection["projection.country.type"] == "enum"
    assert got.projection["projection.country.values"] == "FR,DE,US"
    assert got.projection["projection.customertier.type"] == "injected"
    assert "projection.customertier.values" not in got.projection
    # The path keeps the field's spelling; the column is lower-cased as Glue stores it.
    assert got.projection["storage.location.template"] == (
        "s3://bucket/topics/orders/country=${country}/customerTier=${customertier}/"
    )


def test_field_time_puts_fields_before_time(layout_dir: Path) -> None:
    got = _layout(
        layout_dir,
        {
            "partitioner.class": "field_time",
            "partition.field.name": "region",
            "path.format": "'year'=YYYY/'month'=MM",
        },
    )
    assert [k for k, _ in got.partition_keys] == ["region", "year", "month"]


@pytest.mark.parametrize(
    ("fmt", "serde", "input_format"),
    [
        (
            "json",
            "org.apache.hive.hcatalog.data.JsonSerDe",
            "org.apache.hadoop.mapred.TextInputFormat",
        ),
        (
            "io.confluent.connect.s3.format.avro.AvroFormat",
            "org.apache.hadoop.hive.serde2.avro.AvroSerDe",
            "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat",
        ),
    ],
)
def test_formats_pick_serde(layout_dir: Path, fmt: str, serde: str, input_format: str) -> None:
    schema = '{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}'
    got = _layout(layout_dir, {"format.class": fmt}, avro_schema_literal=schema)
    assert got.serde == serde
    assert got.input_format == input_format
    if got.format == "avro":
        assert got.serde_parameters == {"avro.schema.literal": schema}
        assert got.table_parameters["classification"] == "avro"


@pytest.mark.parametrize(
    ("config", "kwargs", "message"),
    [
        ({"format.class": "avro"}, {}, "avro_schema_literal"),
        ({"partitioner.class": "field"}, {}, "partition_field_names"),
        ({"partitioner.class": "time", "path.format": "'d'=MMM"}, {}, "path_format"),
        ({"partitioner.class": "time", "path.format": "year=YYYY"}, {}, "path_format"),
        ({"partitioner.class": "weekly"}, {}, "partitioner"),
        ({"topics.dir": "_s3sink/x"}, {}, "topics_dir"),
        ({}, {"projection_start_year": 2040, "projection_end_year": 2030}, "projection_start"),
        (
            {"partitioner.class": "field_time", "partition.field.name": "hour"},
            {},
            "unique",
        ),
    ],
)
def test_layout_rejects_bad_configs(
    layout_dir: Path, config: dict[str, str], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TerraformError, match=message):
        _layout(layout_dir, config, **kwargs)


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


def test_no_hard_coded_account_ids_or_regions() -> None:
    for directory in (TF, TABLE_LAYOUT):
        module = load_module(directory)
        code = {k: module.get(k, []) for k in ("resource", "data", "locals", "module")}
        for text in _walk_strings(code):
            assert not re.search(r"(?<![0-9])[0-9]{12}(?![0-9])", text), text
            assert not re.search(r"\b(us|eu|ap|sa|ca|me|af)-[a-z]+-[0-9]\b", text), text


def test_readme_documents_every_input_and_output() -> None:
    readme = (TF / "README.md").read_text()
    for kind in ("variable", "output"):
        for name in named(TF, kind):
            assert f"| `{name}` |" in readme, f"terraform/README.md: document {kind} {name}"
