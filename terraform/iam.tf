# ---------------------------------------------------------------------------
# Least-privilege policy for the sink (attach it to any role that runs it)
# ---------------------------------------------------------------------------
#
# What the sink does in the bucket, and the permission each step needs:
#   list the commit log and staging (takeover, verify)   s3:ListBucket, prefix-scoped
#   find and abort stale multipart uploads                s3:ListBucketMultipartUploads,
#                                                         s3:ListMultipartUploadParts,
#                                                         s3:AbortMultipartUpload
#   upload to staging, write markers, publish (copy)      s3:PutObject, s3:GetObject
#   read back markers and files (verify, restore)         s3:GetObject
#   delete published or orphaned staging files            s3:DeleteObject, staging only
#   SSE-KMS                                               kms:GenerateDataKey, kms:Decrypt
# Data files and commit markers are never deleted by the sink: DeleteObject is
# granted on _s3sink/staging/ alone.

data "aws_iam_policy_document" "sink" {
  statement {
    sid       = "ListSinkPrefixes"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        "${local.data_prefix}*",
        "${local.state_prefix}*",
      ]
    }
  }

  statement {
    # s3:ListBucketMultipartUploads has no s3:prefix condition key; it lists
    # upload ids and keys only, no object data.
    sid       = "ListMultipartUploads"
    effect    = "Allow"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid     = "ReadWriteDataAndState"
    effect  = "Allow"
    actions = ["s3:GetObject", "s3:PutObject"]
    resources = [
      "${aws_s3_bucket.this.arn}/${local.data_prefix}*",
      "${aws_s3_bucket.this.arn}/${local.state_prefix}*",
    ]
  }

  statement {
    sid     = "ManageMultipartUploads"
    effect  = "Allow"
    actions = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = [
      "${aws_s3_bucket.this.arn}/${local.data_prefix}*",
      "${aws_s3_bucket.this.arn}/${local.staging_prefix}*",
    ]
  }

  statement {
    sid       = "DeleteStagingOnly"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.staging_prefix}*"]
  }

  statement {
    sid       = "UseBucketKeyThroughS3"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "sink" {
  name        = "${var.name}-sink"
  description = "s3sink ${var.name}: least privilege on s3://${local.bucket_name}/${local.prefix}"
  policy      = data.aws_iam_policy_document.sink.json

  tags = local.tags
}

# ---------------------------------------------------------------------------
# ECS roles: task role (the sink) and execution role (ECS agent)
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    sid     = "EcsTasksOfThisAccount"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "task" {
  count = var.create_ecs_service ? 1 : 0

  name               = "${var.name}-task"
  description        = "s3sink ${var.name}: the sink's own permissions"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "task_sink" {
  count = var.create_ecs_service ? 1 : 0

  role       = aws_iam_role.task[0].name
  policy_arn = aws_iam_policy.sink.arn
}

resource "aws_iam_role_policy_attachment" "task_additional" {
  for_each = var.create_ecs_service ? toset(var.additional_task_role_policy_arns) : toset([])

  role       = aws_iam_role.task[0].name
  policy_arn = each.value
}

resource "aws_iam_role" "execution" {
  count = var.create_ecs_service ? 1 : 0

  name               = "${var.name}-execution"
  description        = "s3sink ${var.name}: ECS agent pulls the image, writes logs and reads the sink's secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "execution_managed" {
  count = var.create_ecs_service ? 1 : 0

  role       = aws_iam_role.execution[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

locals {
  ssm_secret_arns = sort(distinct([for arn in values(var.sink_secrets) : arn if can(regex("^arn:aws[a-z-]*:ssm:", arn))]))
  # ECS accepts "<secret arn>:<json key>:<version stage>:<version id>"; the
  # permission is on the secret itself.
  secretsmanager_secret_arns = sort(distinct([
    for arn in values(var.sink_secrets) :
    join(":", slice(split(":", arn), 0, 7)) if can(regex("^arn:aws[a-z-]*:secretsmanager:", arn))
  ]))
}

data "aws_iam_policy_document" "execution_secrets" {
  count = var.create_ecs_service && length(var.sink_secrets) > 0 ? 1 : 0

  dynamic "statement" {
    for_each = length(local.ssm_secret_arns) > 0 ? [local.ssm_secret_arns] : []
    content {
      sid       = "ReadSinkParameters"
      effect    = "Allow"
      actions   = ["ssm:GetParameters"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(local.secretsmanager_secret_arns) > 0 ? [local.secretsmanager_secret_arns] : []
    content {
      sid       = "ReadSinkSecrets"
      effect    = "Allow"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(var.secrets_kms_key_arns) > 0 ? [var.secrets_kms_key_arns] : []
    content {
      sid       = "DecryptSinkSecrets"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = statement.value

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ssm.${local.region}.amazonaws.com", "secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = var.create_ecs_service && length(var.sink_secrets) > 0 ? 1 : 0

  name   = "sink-secrets"
  role   = aws_iam_role.execution[0].id
  policy = data.aws_iam_policy_document.execution_secrets[0].json
}
