data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # `id` is the region name in provider 5.x and 6.x alike (6.x deprecates `name`).
  region = data.aws_region.current.id

  bucket_name = coalesce(var.bucket_name, "${var.name}-${local.account_id}-${local.region}")
  bucket_arn  = "arn:${local.partition}:s3:::${local.bucket_name}"

  # Key layout written by the sink (see DESIGN.md):
  #   <prefix><topics_dir>/<topic>/<encoded partition>/<file>   final data files
  #   <prefix>_s3sink/log/...                                   commit markers
  #   <prefix>_s3sink/staging/...                               uploads before publish
  prefix         = var.key_prefix == "" ? "" : "${var.key_prefix}/"
  data_prefix    = "${local.prefix}${var.topics_dir}/"
  state_prefix   = "${local.prefix}_s3sink/"
  staging_prefix = "${local.prefix}_s3sink/staging/"
  # Athena query results: outside the data and state prefixes, not readable by the sink.
  athena_results_prefix = "${local.prefix}_athena/results/"

  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn

  glue_database_name = coalesce(var.glue_database_name, replace(var.name, "-", "_"))
  log_group_name     = "/ecs/${var.name}"

  tags = merge({ "app" = "s3sink", "s3sink:name" = var.name }, var.tags)
}

# ---------------------------------------------------------------------------
# KMS key for the bucket (SSE-KMS), the Athena results and the log group
# ---------------------------------------------------------------------------

resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description             = "s3sink ${var.name}: S3 archive, Athena results and logs"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_in_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # Key administration and use stay with IAM policies of this account
        # (the sink's policy grants only GenerateDataKey and Decrypt via S3).
        Sid       = "AccountIAMPolicies"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsForTheSinkLogGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"
          }
        }
      },
    ]
  })

  tags = local.tags
}

resource "aws_kms_alias" "this" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

# ---------------------------------------------------------------------------
# Table layout per topic: partition keys and projection from the partitioner
# ---------------------------------------------------------------------------

module "table_layout" {
  source   = "./modules/table-layout"
  for_each = var.tables

  bucket                 = local.bucket_name
  key_prefix             = var.key_prefix
  topics_dir             = var.topics_dir
  topic                  = each.key
  format                 = var.format
  partitioner            = var.partitioner
  path_format            = var.path_format
  partition_field_names  = var.partition_field_names
  partition_field_values = var.partition_field_values
  kafka_partition_count  = coalesce(each.value.kafka_partition_count, var.kafka_partition_count)
  projection_start_year  = var.projection_start_year
  projection_end_year    = var.projection_end_year
  avro_schema_literal    = each.value.avro_schema_literal
}
