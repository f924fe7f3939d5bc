variable "bucket" {
  description = "Name of the S3 bucket the sink writes to (s3.bucket.name)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a valid S3 bucket name."
  }
}

variable "key_prefix" {
  description = "Key prefix of storage.url (s3://bucket/<key_prefix>), without leading or trailing slash; empty when the sink writes at the bucket root."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.key_prefix == "" || can(regex("^[^/](.*[^/])?$", var.key_prefix))
    error_message = "key_prefix must be empty or a key prefix without a leading or trailing slash, e.g. \"archive/prod\"."
  }
}

variable "topics_dir" {
  description = "The sink's topics.dir: the folder under the prefix that holds the data files."
  type        = string
  default     = "topics"
  nullable    = false

  validation {
    condition     = can(regex("^[^/](.*[^/])?$", var.topics_dir)) && !startswith(var.topics_dir, "_s3sink")
    error_message = "topics_dir must not start or end with a slash and must not be inside _s3sink/ (the sink's internal state)."
  }
}

variable "topic" {
  description = "Kafka topic whose files the table reads."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.topic))
    error_message = "topic must be a valid Kafka topic name: 1 to 249 characters of letters, digits, '.', '_' and '-'."
  }
}

variable "format" {
  description = "The sink's format.class: parquet, json or avro (short names or the Confluent class names)."
  type        = string
  default     = "parquet"
  nullable    = false

  validation {
    condition = contains([
      "parquet", "json", "avro",
      "io.confluent.connect.s3.format.parquet.ParquetFormat",
      "io.confluent.connect.s3.format.json.JsonFormat",
      "io.confluent.connect.s3.format.avro.AvroFormat",
    ], var.format)
    error_message = "format must be parquet, json or avro (or the matching io.confluent.connect.s3.format.* class name)."
  }
}

variable "partitioner" {
  description = "The sink's partitioner.class: default, field, time, hourly, daily or field_time (or the Confluent class names)."
  type        = string
  default     = "default"
  nullable    = false

  validation {
    condition = contains([
      "default", "field", "time", "hourly", "daily", "field_time",
      "io.confluent.connect.storage.partitioner.DefaultPartitioner",
      "io.confluent.connect.storage.partitioner.FieldPartitioner",
      "io.confluent.connect.storage.partitioner.TimeBasedPartitioner",
      "io.confluent.connect.storage.partitioner.HourlyPartitioner",
      "io.confluent.connect.storage.partitioner.DailyPartitioner",
    ], var.partitioner)
    error_message = "partitioner must be one of default, field, time, hourly, daily, field_time (or a io.confluent.connect.storage.partitioner.* class name)."
  }
}

variable "path_format" {
  description = "The sink's path.format (Joda-Time syntax, as in the Confluent S3 sink), used by the time and field_time partitioners. Each '/'-separated segment is 'name'=PATTERN; PATTERN is one of YYYY, yyyy, YY, yy, MM, M, dd, d, HH, H, mm, m, or a combination of them with '-', '_', '.' or ':' (e.g. 'dt'=YYYY-MM-dd)."
  type        = string
  default     = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
  nullable    = false

  validation {
    condition = alltrue([
      for segment in split("/", trim(var.path_format, "/")) :
      can(regex("^'[A-Za-z_][A-Za-z0-9_]*'=[yYMdHm][yYMdHm_.:-]*$", segment)) && try(alltrue([
        # Each run of one letter is a supported field width (MMM, a month name, is not).
        for run in regexall("y+|Y+|M+|d+|H+|m+", regex("^'[^']*'=(.*)$", segment)[0]) :
        contains(["yyyy", "YYYY", "yy", "YY", "MM", "M", "dd", "d", "HH", "H", "mm", "m"], run)
      ]), false)
    ])
    error_message = "path_format must be '/'-separated segments of the form 'name'=PATTERN with PATTERN built from YYYY, yyyy, YY, yy, MM, M, dd, d, HH, H, mm, m (e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH or 'dt'=YYYY-MM-dd/'hour'=HH)."
  }
}

variable "partition_field_names" {
  description = "The sink's partition.field.name as a list: record fields whose values name the output partitions (field and field_time partitioners), in path order."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for f in var.partition_field_names : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", f))])
    error_message = "partition_field_names must be top-level field names of letters, digits and underscores (they become Glue column names)."
  }
}

variable "partition_field_values" {
  description = "Known values per partition field. A field listed here is projected as an enum; any other field is projected as injected, so queries must filter it with '=' or IN."
  type        = map(list(string))
  default     = {}
  nullable    = false
}

variable "kafka_partition_count" {
  description = "Upper bound for the Kafka partition numbers projected by the default partitioner (partition=0 .. partition=N-1). A bound larger than the topic's partition count only costs a few empty S3 listings."
  type        = number
  default     = 100
  nullable    = false

  validation {
    condition     = var.kafka_partition_count >= 1 && floor(var.kafka_partition_count) == var.kafka_partition_count
    error_message = "kafka_partition_count must be a whole number of at least 1."
  }
}

variable "projection_start_year" {
  description = "First year projected for time partitions."
  type        = number
  default     = 2020
  nullable    = false

  validation {
    condition     = var.projection_start_year >= 1970 && var.projection_start_year <= 9999 && floor(var.projection_start_year) == var.projection_start_year
    error_message = "projection_start_year must be a whole year between 1970 and 9999."
  }
}

variable "projection_end_year" {
  description = "Last year projected by integer year columns (date-projected columns end at NOW)."
  type        = number
  default     = 2050
  nullable    = false

  validation {
    condition     = var.projection_end_year >= 1970 && var.projection_end_year <= 9999 && floor(var.projection_end_year) == var.projection_end_year
    error_message = "projection_end_year must be a whole year between 1970 and 9999."
  }
}

variable "avro_schema_literal" {
  description = "Avro schema (JSON) of the records; required by Athena's AvroSerDe when format is avro."
  type        = string
  default     = null

  validation {
    condition     = var.avro_schema_literal == null || can(jsondecode(coalesce(var.avro_schema_literal, "null")))
    error_message = "avro_schema_literal must be an Avro schema in JSON."
  }
}
