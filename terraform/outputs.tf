output "bucket_name" {
  description = "The archive bucket (s3.bucket.name)."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the archive bucket."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the bucket, the Athena results and the log group."
  value       = local.kms_key_arn
}

output "data_prefix" {
  description = "Key prefix of the data files (<key_prefix>/<topics_dir>/)."
  value       = local.data_prefix
}

output "state_prefix" {
  description = "Key prefix of the sink's commit log and staging area (<key_prefix>/_s3sink/)."
  value       = local.state_prefix
}

output "sink_policy_arn" {
  description = "Least-privilege IAM policy for the sink; attach it to whatever role runs s3sink (ECS, EKS, EC2)."
  value       = aws_iam_policy.sink.arn
}

output "task_role_arn" {
  description = "IAM role of the sink's ECS tasks (null without the ECS service)."
  value       = try(aws_iam_role.task[0].arn, null)
}

output "execution_role_arn" {
  description = "ECS execution role (image pull, logs, secrets), null without the ECS service."
  value       = try(aws_iam_role.execution[0].arn, null)
}

output "glue_database_name" {
  description = "Glue database holding one table per entry of tables."
  value       = aws_glue_catalog_database.this.name
}

output "glue_table_names" {
  description = "Glue table name per topic."
  value       = { for topic, table in aws_glue_catalog_table.topic : topic => table.name }
}

output "athena_workgroup_name" {
  description = "Athena workgroup with the enforced, KMS-encrypted results location."
  value       = aws_athena_workgroup.this.name
}

output "athena_results_location" {
  description = "Where the workgroup writes query results."
  value       = "s3://${aws_s3_bucket.this.bucket}/${local.athena_results_prefix}"
}

output "ecs_cluster_arn" {
  description = "ECS cluster running the sink (null without the ECS service)."
  value       = var.create_ecs_service ? coalesce(var.ecs_cluster_arn, try(aws_ecs_cluster.this[0].arn, null)) : null
}

output "ecs_service_name" {
  description = "ECS service name (null without the ECS service)."
  value       = try(aws_ecs_service.sink[0].name, null)
}

output "task_definition_arn" {
  description = "Task definition revision the service runs."
  value       = try(aws_ecs_task_definition.sink[0].arn, null)
}

output "log_group_name" {
  description = "CloudWatch log group of the sink (null without the ECS service)."
  value       = try(aws_cloudwatch_log_group.sink[0].name, null)
}

output "security_group_id" {
  description = "Security group of the tasks (egress only). Add an ingress rule from your Prometheus to http_port to scrape /metrics."
  value       = try(aws_security_group.sink[0].id, null)
}

output "sink_config" {
  description = "Non-secret sink settings this module passes to the container, as config keys; use them for `s3sink ddl` or `s3sink verify` runs against the same bucket."
  value       = local.sink_config
}
