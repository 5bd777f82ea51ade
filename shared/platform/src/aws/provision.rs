//! Creates the AWS resources the adapters expect, when they are missing.
//!
//! In a deployment `template.yaml` creates them; these calls serve the tests
//! (against the emulator) and `serve --backend aws` against a bare account.
//! Each is idempotent: a resource that already exists is left as it is
//! (queues get their attributes brought in line with the spec).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use aws_sdk_eventbridge::types::{RuleState, Target};
use aws_sdk_s3::operation::create_bucket::CreateBucketError;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Event, FilterRule, FilterRuleName,
    NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sesv2::operation::create_email_identity::CreateEmailIdentityError;
use aws_sdk_sqs::operation::create_queue::CreateQueueError;
use aws_sdk_sqs::types::QueueAttributeName;

use super::{AwsBackend, error_code, sqs};
use crate::events::{EVENT_SOURCE, Route, validate_type};
use crate::queue::QueueSpec;
use crate::secrets::SecretValue;

/// The table's TTL attribute (see the DynamoDB adapter's layout).
const TTL_ATTRIBUTE: &str = "expires_at";
/// How long to wait for a new table to become usable.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a dead-letter queue keeps messages: SQS's maximum, 14 days.
const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 3600;

fn key(name: &str, key_type: KeyType) -> anyhow::Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}

fn string_attribute(name: &str) -> anyhow::Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn index(name: &str, pk: &str, sk: &str) -> anyhow::Result<GlobalSecondaryIndex> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?)
}

impl AwsBackend {
    /// Creates the table `name` in the shape every service uses (keys
    /// `pk`/`sk`, indexes `gsi1` and `gsi2`, on-demand billing, TTL on
    /// `expires_at`) unless it exists, and waits until it is active.
    #[tracing::instrument(skip(self))]
    pub async fn ensure_table(&self, name: &str) -> anyhow::Result<()> {
        let mut create = self
            .dynamodb()
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(index("gsi1", "gsi1pk", "gsi1sk")?)
            .global_secondary_indexes(index("gsi2", "gsi2pk", "gsi2sk")?);
        for attribute in ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
            create = create.attribute_definitions(string_attribute(attribute)?);
        }
        match create.send().await {
            Ok(_) => tracing::info!(table = name, "created table"),
            Err(err) if error_code(&err) == Some("ResourceInUseException") => {
                tracing::debug!(table = name, "table exists");
            }
            Err(err) => {
                return Err(anyhow::Error::new(err).context(format!("creating table {name}")));
            }
        }
        self.wait_for_table(name).await?;
        self.ensure_ttl(name).await;
        Ok(())
    }

    async fn wait_for_table(&self, name: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + TABLE_READY_TIMEOUT;
        loop {
            let out = self
                .dynamodb()
                .describe_table()
                .table_name(name)
                .send()
                .await
                .with_context(|| format!("describing table {name}"))?;
            let table = out
                .table
                .ok_or_else(|| anyhow!("table {name} not described"))?;
            let indexes_ready = table
                .global_secondary_indexes()
                .iter()
                .all(|i| i.index_status().is_none_or(|s| *s == IndexStatus::Active));
            if table.table_status() == Some(&TableStatus::Active) && indexes_ready {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("table {name} not active after {TABLE_READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Turns TTL on for `expires_at`. Failing here is not fatal: the adapter
    /// hides expired items itself, TTL only reclaims their space.
    async fn ensure_ttl(&self, name: &str) {
        let current = self
            .dynamodb()
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .ok()
            .and_then(|out| out.time_to_live_description);
        if let Some(ttl) = current {
            let on = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            if on && ttl.attribute_name() == Some(TTL_ATTRIBUTE) {
                return;
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build();
        let result = match spec {
            Ok(spec) => self
                .dynamodb()
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map(|_| ())
                .map_err(anyhow::Error::new),
            Err(err) => Err(anyhow::Error::new(err)),
        };
        if let Err(err) = result {
            tracing::warn!(
                table = name,
                error = format!("{err:#}"),
                "could not enable TTL"
            );
        }
    }

    /// Creates the queue of `spec` (its dead-letter queue first, then the
    /// queue with its visibility timeout and redrive policy) unless it exists;
    /// returns the queue's URL.
    #[tracing::instrument(skip(self), fields(queue = %spec.name))]
    pub async fn ensure_queue(&self, spec: &QueueSpec) -> anyhow::Result<String> {
        let mut attributes = HashMap::from([(
            QueueAttributeName::VisibilityTimeout,
            spec.visibility_timeout.as_secs().to_string(),
        )]);
        if let Some(dlq) = &spec.dead_letter {
            let dlq_attributes = HashMap::from([(
                QueueAttributeName::MessageRetentionPeriod,
                DLQ_RETENTION_SECONDS.to_string(),
            )]);
            let dlq_url = self.create_queue(dlq, dlq_attributes).await?;
            let arn = sqs::queue_arn(self.sqs(), &dlq_url)
                .await
                .with_context(|| format!("ARN of dead-letter queue {dlq}"))?;
            let policy = serde_json::json!({
                "deadLetterTargetArn": arn,
                "maxReceiveCount": spec.max_receives.clamp(1, 1000),
            });
            attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        self.create_queue(&spec.name, attributes).await
    }

    async fn create_queue(
        &self,
        name: &str,
        attributes: HashMap<QueueAttributeName, String>,
    ) -> anyhow::Result<String> {
        let created = self
            .sqs()
            .create_queue()
            .queue_name(name)
            .set_attributes(Some(attributes.clone()))
            .send()
            .await;
        match created {
            Ok(out) => {
                tracing::info!(queue = name, "created queue");
                out.queue_url
                    .ok_or_else(|| anyhow!("CreateQueue of {name} returned no URL"))
            }
            // It exists with other attributes: bring them in line.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(CreateQueueError::QueueNameExists(_))
                ) =>
            {
                let url = sqs::queue_url(self.sqs(), name).await?;
                self.sqs()
                    .set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attributes))
                    .send()
                    .await
                    .with_context(|| format!("updating attributes of queue {name}"))?;
                Ok(url)
            }
            Err(err) => Err(anyhow::Error::new(err).context(format!("creating queue {name}"))),
        }
    }

    /// Creates the bucket `name` in the configured region unless this
    /// account already owns it.
    #[tracing::instrument(skip(self))]
    pub async fn ensure_bucket(&self, name: &str) -> anyhow::Result<()> {
        let mut create = self.s3().create_bucket().bucket(name);
        if let Some(region) = self.inner.config.region().map(|r| r.as_ref().to_owned())
            && region != "us-east-1"
        {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {
                tracing::info!(bucket = name, "created bucket");
                Ok(())
            }
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(CreateBucketError::BucketAlreadyOwnedByYou(_))
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(anyhow::Error::new(err).context(format!("creating bucket {name}"))),
        }
    }

    /// Creates the secret `name` holding `initial` unless it exists; an
    /// existing secret keeps its value.
    #[tracing::instrument(skip(self, initial))]
    pub async fn ensure_secret(&self, name: &str, initial: &SecretValue) -> anyhow::Result<()> {
        crate::secrets::validate_secret_name(name)?;
        let created = self
            .secrets()
            .create(name, initial)
            .await
            .with_context(|| format!("creating secret {name}"))?;
        if created {
            tracing::info!(secret = name, "created secret");
        }
        Ok(())
    }

    /// Creates the SES identity `address` (an email address, or a domain)
    /// unless it exists. SES then sends the address a verification link
    /// (a domain needs its DKIM records published); until it is verified,
    /// sending from it is refused, and in the SES sandbox so is sending to
    /// unverified recipients.
    #[tracing::instrument(skip(self))]
    pub async fn ensure_email_identity(&self, address: &str) -> anyhow::Result<()> {
        match self
            .sesv2()
            .create_email_identity()
            .email_identity(address)
            .send()
            .await
        {
            Ok(out) => {
                tracing::info!(
                    identity = address,
                    verified = out.verified_for_sending_status(),
                    "created email identity"
                );
                Ok(())
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(CreateEmailIdentityError::AlreadyExistsException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("creating email identity {address}")))
            }
        }
    }

    /// Creates the custom bus `name` unless it exists.
    #[tracing::instrument(skip(self))]
    pub async fn ensure_event_bus(&self, name: &str) -> anyhow::Result<()> {
        match self
            .eventbridge()
            .create_event_bus()
            .name(name)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(bus = name, "created event bus");
                Ok(())
            }
            Err(e) if error_code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("creating event bus {name}"))),
        }
    }

    /// Creates, for each queue named in `routes`, one rule on `bus` matching
    /// the event types routed to it, targeting that queue (looked up by
    /// name), and a queue policy letting that rule send to it: the shape
    /// template.yaml gives each consumer. Rules are named `to-<queue>`.
    #[tracing::instrument(skip(self, routes))]
    pub async fn ensure_routes(&self, bus: &str, routes: &[Route]) -> anyhow::Result<()> {
        let mut by_queue: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in routes {
            validate_type(&r.event_type)?;
            by_queue
                .entry(r.queue.as_str())
                .or_default()
                .push(r.event_type.as_str());
        }
        for (queue, types) in by_queue {
            let rule_name: String = format!("to-{queue}").chars().take(64).collect();
            let pattern = serde_json::json!({
                "source": [EVENT_SOURCE],
                "detail-type": types,
            });
            let rule = self
                .eventbridge()
                .put_rule()
                .name(&rule_name)
                .event_bus_name(bus)
                .event_pattern(pattern.to_string())
                .state(RuleState::Enabled)
                .send()
                .await
                .with_context(|| format!("creating rule {rule_name} on bus {bus}"))?;
            let rule_arn = rule.rule_arn().unwrap_or_default().to_owned();
            let url = sqs::queue_url(self.sqs(), queue)
                .await
                .with_context(|| format!("the queue {queue} a rule routes to"))?;
            let queue_arn = sqs::queue_arn(self.sqs(), &url).await?;
            let target = Target::builder()
                .id("queue")
                .arn(&queue_arn)
                .build()
                .context("rule target")?;
            let out = self
                .eventbridge()
                .put_targets()
                .rule(&rule_name)
                .event_bus_name(bus)
                .targets(target)
                .send()
                .await
                .with_context(|| format!("targeting {queue} from rule {rule_name}"))?;
            anyhow::ensure!(
                out.failed_entry_count() == 0,
                "rule {rule_name} refused its target {queue}"
            );
            let statement = serde_json::json!({
                "Sid": "EventBridgeRule",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            });
            self.grant_send(&url, statement)
                .await
                .with_context(|| format!("policy of queue {queue}"))?;
        }
        Ok(())
    }

    /// Puts `statement` into the policy of the queue at `url`, replacing the
    /// statement with the same `Sid` and keeping the others: a queue can be
    /// the target of a bus rule and of a bucket notification at once.
    async fn grant_send(&self, url: &str, statement: serde_json::Value) -> anyhow::Result<()> {
        let current = self
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::Policy)
            .send()
            .await
            .context("reading the queue policy")?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::Policy));
        let mut statements: Vec<serde_json::Value> = current
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|p| p.get("Statement").and_then(|s| s.as_array()).cloned())
            .unwrap_or_default();
        statements.retain(|s| s.get("Sid") != statement.get("Sid"));
        statements.push(statement);
        let policy = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
        self.sqs()
            .set_queue_attributes()
            .queue_url(url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .context("writing the queue policy")?;
        Ok(())
    }

    /// Replaces the event notifications of bucket `bucket`: objects created
    /// under each prefix are announced on the queue at its URL, which is
    /// granted `sqs:SendMessage` from the bucket (the shape template.yaml
    /// gives the media bucket).
    #[tracing::instrument(skip(self))]
    pub async fn ensure_bucket_notifications(
        &self,
        bucket: &str,
        notifications: &[(String, String)],
    ) -> anyhow::Result<()> {
        let mut configurations = Vec::with_capacity(notifications.len());
        for (i, (prefix, url)) in notifications.iter().enumerate() {
            let queue_arn = sqs::queue_arn(self.sqs(), url).await?;
            let statement = serde_json::json!({
                "Sid": format!("S3Notification-{bucket}"),
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{bucket}")}},
            });
            self.grant_send(url, statement)
                .await
                .with_context(|| format!("letting bucket {bucket} notify {url}"))?;
            let filter = NotificationConfigurationFilter::builder()
                .key(
                    S3KeyFilter::builder()
                        .filter_rules(
                            FilterRule::builder()
                                .name(FilterRuleName::Prefix)
                                .value(prefix)
                                .build(),
                        )
                        .build(),
                )
                .build();
            configurations.push(
                QueueConfiguration::builder()
                    .id(format!("created-{i}"))
                    .queue_arn(queue_arn)
                    .events(Event::from("s3:ObjectCreated:*"))
                    .filter(filter)
                    .build()
                    .context("bucket notification")?,
            );
        }
        self.s3()
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .set_queue_configurations(Some(configurations))
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("notifications of bucket {bucket}"))?;
        Ok(())
    }
}
