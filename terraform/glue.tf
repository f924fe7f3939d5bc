resource "aws_glue_catalog_database" "this" {
  name        = local.glue_database_name
  description = "s3sink ${var.name}: Kafka topics archived to s3://${local.bucket_name}/${local.data_prefix}"

  tags = local.tags
}

# One table per entry of var.tables. Partition keys and projection come from
# module.table_layout, which derives them from the same settings the sink uses
# (partitioner.class, path.format, partition.field.name), so Athena reads the
# paths the sink writes without MSCK REPAIR or crawlers.
resource "aws_glue_catalog_table" "topic" {
  for_each = var.tables

  database_name = aws_glue_catalog_database.this.name
  name          = coalesce(each.value.table_name, replace(lower(each.key), "/[^a-z0-9_]/", "_"))
  description   = "Kafka topic ${each.key} archived by s3sink ${var.name}"
  table_type    = "EXTERNAL_TABLE"
  parameters    = module.table_layout[each.key].table_parameters

  dynamic "partition_keys" {
    for_each = module.table_layout[each.key].partition_keys
    content {
      name = partition_keys.value.name
      type = partition_keys.value.type
    }
  }

  storage_descriptor {
    location      = module.table_layout[each.key].location
    input_format  = module.table_layout[each.key].storage.input_format
    output_format = module.table_layout[each.key].storage.output_format

    ser_de_info {
      name                  = "s3sink-${module.table_layout[each.key].format}"
      serialization_library = module.table_layout[each.key].storage.serialization_library
      parameters            = module.table_layout[each.key].storage.serde_parameters
    }

    dynamic "columns" {
      for_each = each.value.columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }

  lifecycle {
    precondition {
      condition     = contains(var.topics, each.key)
      error_message = "tables has a key \"${each.key}\" that is not in topics: the sink would never write it."
    }
    precondition {
      condition = length(setintersection(
        [for c in each.value.columns : lower(c.name)],
        [for k in module.table_layout[each.key].partition_keys : k.name],
      )) == 0
      error_message = "A column of table \"${each.key}\" has the name of a partition column; rename or drop it."
    }
  }
}
