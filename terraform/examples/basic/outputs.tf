output "bucket_name" {
  description = "The archive bucket."
  value       = module.s3sink.bucket_name
}

output "athena_workgroup_name" {
  description = "Run queries in this workgroup."
  value       = module.s3sink.athena_workgroup_name
}

output "glue_table_names" {
  description = "Glue table per topic, in database glue_database_name."
  value       = module.s3sink.glue_table_names
}

output "glue_database_name" {
  description = "Glue database of the tables."
  value       = module.s3sink.glue_database_name
}

output "ecs_service_name" {
  description = "The sink's ECS service."
  value       = module.s3sink.ecs_service_name
}

output "log_group_name" {
  description = "The sink's logs."
  value       = module.s3sink.log_group_name
}

output "sink_config" {
  description = "Non-secret settings passed to the sink."
  value       = module.s3sink.sink_config
}
