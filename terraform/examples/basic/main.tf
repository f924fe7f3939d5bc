provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "project" = "s3sink-example"
    }
  }
}

locals {
  sasl = var.kafka_sasl_password_parameter_arn != null
}

# Archives the topic "orders" as hourly-partitioned Parquet, queryable in
# Athena as s3sink_example.orders through the workgroup "s3sink-example".
module "s3sink" {
  source = "../.."

  name   = "s3sink-example"
  topics = ["orders"]

  format      = "parquet"
  partitioner = "hourly"

  tables = {
    orders = {
      columns = [
        { name = "order_id", type = "string", comment = "Order identifier" },
        { name = "customer_id", type = "string" },
        { name = "amount", type = "double" },
        { name = "currency", type = "string" },
        { name = "created_at", type = "timestamp" },
      ]
    }
  }

  archive_transition_days = 30
  archive_storage_class   = "GLACIER_IR"
  staging_expiration_days = 7

  container_image         = var.container_image
  vpc_id                  = var.vpc_id
  subnet_ids              = var.subnet_ids
  kafka_bootstrap_servers = var.kafka_bootstrap_servers

  sink_config = merge(
    {
      "flush.size"         = "100000"
      "rotate.interval.ms" = "600000"
      "parquet.codec"      = "zstd"
    },
    local.sasl ? {
      "consumer.security.protocol" = "SASL_SSL"
      "consumer.sasl.mechanism"    = "SCRAM-SHA-512"
      "consumer.sasl.username"     = "s3sink"
    } : {},
  )

  sink_secrets = local.sasl ? {
    "consumer.sasl.password" = var.kafka_sasl_password_parameter_arn
  } : {}
}
