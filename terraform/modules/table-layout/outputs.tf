output "partitioner" {
  description = "The partitioner's short name (Confluent class names resolved)."
  value       = local.partitioner

  precondition {
    condition     = !local.uses_fields || length(var.partition_field_names) > 0
    error_message = "The ${local.partitioner} partitioner needs partition_field_names (the sink's partition.field.name)."
  }
  precondition {
    condition     = var.projection_start_year <= var.projection_end_year
    error_message = "projection_start_year must not be after projection_end_year."
  }
  precondition {
    condition     = length(distinct([for c in local.partition_columns : c.name])) == length(local.partition_columns)
    error_message = "Partition column names must be unique (compared case-insensitively, as Glue lower-cases them)."
  }
}

output "format" {
  description = "The format's short name: parquet, json or avro."
  value       = local.format

  precondition {
    condition     = local.format != "avro" || var.avro_schema_literal != null
    error_message = "format avro needs avro_schema_literal: Athena's AvroSerDe reads the schema from the table."
  }
}

output "path_format" {
  description = "The effective path.format (fixed for the hourly and daily partitioners, null for partitioners without time)."
  value       = local.uses_time ? local.path_format : null
}

output "location" {
  description = "Table LOCATION: the topic's folder under topics.dir (never the _s3sink/ state)."
  value       = local.location
}

output "partition_keys" {
  description = "Glue partition keys, in path order: list of {name, type}."
  value       = local.partition_keys
}

output "projection_parameters" {
  description = "Athena partition projection table properties, including storage.location.template."
  value       = local.projection_parameters
}

output "table_parameters" {
  description = "All Glue table parameters: EXTERNAL, classification and the projection properties."
  value       = local.table_parameters
}

output "storage" {
  description = "Input format, output format, SerDe and SerDe parameters for the format."
  value       = local.storage
}
