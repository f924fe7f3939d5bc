# Derives a Glue/Athena table layout from the sink's own configuration keys
# (format.class, partitioner.class, path.format, partition.field.name), so the
# table reads exactly the paths the sink writes:
#
#   <prefix>/<topics.dir>/<topic>/<encoded partition>/<topic>+<partition>+<offset>.<ext>
#
# Partition columns and projection:
#   default     partition=<n>          -> "partition" int, integer projection 0..N-1
#   field       <field>=<value>        -> <field> string, enum (values known) or injected
#   time/hourly/daily, path.format segments 'name'=PATTERN:
#     single token (YYYY, MM, dd, HH, mm) -> <name> string, integer projection with
#                                           zero-padding digits (Joda MM prints 01..12)
#     composite (e.g. YYYY-MM-dd)         -> <name> string, date projection, format in
#                                           java.time syntax, range <start year>..NOW
#   field_time  field segments first, then the time segments.
#
# Joda's YYYY is the year of era, java.time's YYYY is the week-based year: the
# date projection format therefore spells the year as yyyy.

locals {
  confluent_partitioners = {
    "io.confluent.connect.storage.partitioner.DefaultPartitioner"   = "default"
    "io.confluent.connect.storage.partitioner.FieldPartitioner"     = "field"
    "io.confluent.connect.storage.partitioner.TimeBasedPartitioner" = "time"
    "io.confluent.connect.storage.partitioner.HourlyPartitioner"    = "hourly"
    "io.confluent.connect.storage.partitioner.DailyPartitioner"     = "daily"
  }
  partitioner = lookup(local.confluent_partitioners, var.partitioner, var.partitioner)

  confluent_formats = {
    "io.confluent.connect.s3.format.parquet.ParquetFormat" = "parquet"
    "io.confluent.connect.s3.format.json.JsonFormat"       = "json"
    "io.confluent.connect.s3.format.avro.AvroFormat"       = "avro"
  }
  format = lookup(local.confluent_formats, var.format, var.format)

  # HourlyPartitioner and DailyPartitioner ignore path.format and use these.
  fixed_path_formats = {
    hourly = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
    daily  = "'year'=YYYY/'month'=MM/'day'=dd"
  }
  path_format = lookup(local.fixed_path_formats, local.partitioner, var.path_format)

  uses_fields = contains(["field", "field_time"], local.partitioner)
  uses_time   = contains(["time", "hourly", "daily", "field_time"], local.partitioner)

  prefix        = var.key_prefix == "" ? "" : "${var.key_prefix}/"
  location      = "s3://${var.bucket}/${local.prefix}${var.topics_dir}/${var.topic}/"
  location_root = trimsuffix(local.location, "/")

  # Single-token patterns projected as integers; digits = zero padding.
  integer_tokens = {
    "yyyy" = { range = "${var.projection_start_year},${var.projection_end_year}", digits = null }
    "yy"   = { range = "0,99", digits = "2" }
    "MM"   = { range = "1,12", digits = "2" }
    "M"    = { range = "1,12", digits = null }
    "dd"   = { range = "1,31", digits = "2" }
    "d"    = { range = "1,31", digits = null }
    "HH"   = { range = "0,23", digits = "2" }
    "H"    = { range = "0,23", digits = null }
    "mm"   = { range = "0,59", digits = "2" }
    "m"    = { range = "0,59", digits = null }
  }

  time_segments = local.uses_time ? [
    for segment in split("/", trim(local.path_format, "/")) : {
      label   = regex("^'([A-Za-z_][A-Za-z0-9_]*)'=", segment)[0]
      pattern = replace(regex("^'[A-Za-z_][A-Za-z0-9_]*'=(.+)$", segment)[0], "Y", "y")
    }
  ] : []

  time_columns = [
    for s in local.time_segments : {
      label = s.label
      name  = lower(s.label)
      type  = "string"
      projection = contains(keys(local.integer_tokens), s.pattern) ? tomap({
        type   = "integer"
        range  = local.integer_tokens[s.pattern].range
        digits = local.integer_tokens[s.pattern].digits
        }) : tomap({
        type = "date"
        # java.time pattern; the sink writes the same digits with Joda.
        format = s.pattern
        # formatdate() spells day DD and 24-hour hh; month MM and minute mm agree.
        range = "${formatdate(replace(replace(replace(s.pattern, "y", "Y"), "d", "D"), "H", "h"), "${var.projection_start_year}-01-01T00:00:00Z")},NOW"
        # The finest unit in the pattern is the step between partitions.
        interval = "1"
        "interval.unit" = (
          strcontains(s.pattern, "m") ? "MINUTES" :
          strcontains(s.pattern, "H") ? "HOURS" :
          strcontains(s.pattern, "d") ? "DAYS" :
          strcontains(s.pattern, "M") ? "MONTHS" : "YEARS"
        )
      })
    }
  ]

  field_columns = local.uses_fields ? [
    for f in var.partition_field_names : {
      label = f
      name  = lower(f)
      type  = "string"
      projection = length(lookup(var.partition_field_values, f, [])) > 0 ? tomap({
        type   = "enum"
        values = join(",", var.partition_field_values[f])
        }) : tomap({
        type   = "injected"
        values = null
      })
    }
  ] : []

  default_columns = local.partitioner == "default" ? [
    {
      label = "partition"
      name  = "partition"
      type  = "int"
      projection = tomap({
        type   = "integer"
        range  = "0,${var.kafka_partition_count - 1}"
        digits = null
      })
    }
  ] : []

  # Path order: default | fields | time | fields then time.
  partition_columns = concat(local.default_columns, local.field_columns, local.time_columns)

  partition_keys = [
    for c in local.partition_columns : { name = c.name, type = c.type }
  ]

  projection_parameters = merge(
    { "projection.enabled" = "true" },
    merge([
      for c in local.partition_columns : {
        for k, v in c.projection : "projection.${c.name}.${k}" => v if v != null
      }
    ]...),
    {
      "storage.location.template" = join("/", concat(
        [local.location_root],
        [for c in local.partition_columns : format("%s=$${%s}", c.label, c.name)],
        [""],
      ))
    },
  )

  storage_formats = {
    parquet = {
      input_format          = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
      output_format         = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      serde_parameters      = { "serialization.format" = "1" }
    }
    json = {
      # Hive's JSON SerDe reads the sink's JSON lines in Athena, Spark and Trino
      # alike (OpenX's SerDe is Athena/EMR only).
      input_format          = "org.apache.hadoop.mapred.TextInputFormat"
      output_format         = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
      serialization_library = "org.apache.hive.hcatalog.data.JsonSerDe"
      serde_parameters      = { "serialization.format" = "1" }
    }
    avro = {
      input_format          = "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat"
      output_format         = "org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat"
      serialization_library = "org.apache.hadoop.hive.serde2.avro.AvroSerDe"
      serde_parameters      = var.avro_schema_literal == null ? {} : { "avro.schema.literal" = var.avro_schema_literal }
    }
  }
  storage = local.storage_formats[local.format]

  table_parameters = merge(
    {
      "EXTERNAL"       = "TRUE"
      "classification" = local.format
    },
    local.projection_parameters,
  )
}
