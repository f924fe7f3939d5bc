resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Server access logging needs a separate log bucket that the module cannot choose; CloudTrail data events or a log bucket are left to the account's baseline.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost and needs a second region; enable it outside the module where the archive requires it.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications: readers find new files by listing (Athena partition projection) and the sink's commit log.
  bucket        = local.bucket_name
  force_destroy = var.force_destroy

  tags = local.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    # ACLs disabled: the sink's s3.acl.canned must stay unset (or bucket-owner-full-control).
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    # S3 Bucket Keys cut KMS requests (and cost) by orders of magnitude.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = var.versioning_enabled ? "Enabled" : "Suspended"
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid     = "DenyOutdatedTLS"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # A policy that is put before the public access block can be rejected.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  rule {
    id     = "expire-staging"
    status = "Enabled"

    filter {
      prefix = local.staging_prefix
    }

    expiration {
      days = var.staging_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  # Rules are static (a disabled rule still carries its action, with the
  # placeholder days unused) so the rule list keeps its order and shape.
  rule {
    id     = "archive-data"
    status = var.archive_transition_days == null ? "Disabled" : "Enabled"

    filter {
      prefix = local.data_prefix
    }

    transition {
      days          = coalesce(var.archive_transition_days, 30)
      storage_class = var.archive_storage_class
    }
  }

  rule {
    id     = "expire-data"
    status = var.data_expiration_days == null ? "Disabled" : "Enabled"

    filter {
      prefix = local.data_prefix
    }

    expiration {
      days = coalesce(var.data_expiration_days, 36500)
    }
  }

  rule {
    id     = "expire-athena-results"
    status = "Enabled"

    filter {
      prefix = local.athena_results_prefix
    }

    expiration {
      days = var.athena_results_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = var.versioning_enabled ? "Enabled" : "Disabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  # Lifecycle rules apply to versions only once versioning is set.
  depends_on = [aws_s3_bucket_versioning.this]

  lifecycle {
    precondition {
      condition     = var.archive_transition_days == null || !contains(["STANDARD_IA", "ONEZONE_IA"], var.archive_storage_class) || try(var.archive_transition_days >= 30, false)
      error_message = "S3 moves objects to STANDARD_IA or ONEZONE_IA only after at least 30 days: raise archive_transition_days or choose another archive_storage_class."
    }
    precondition {
      condition     = var.data_expiration_days == null || var.archive_transition_days == null || try(var.data_expiration_days > var.archive_transition_days, false)
      error_message = "data_expiration_days must be later than archive_transition_days."
    }
  }
}
