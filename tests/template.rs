//! template.yaml agrees with the service descriptions: every resource
//! variable a service reads is set for its function, every schedule runs
//! its handler at the same expression with the same payload shape, and
//! every subscription has a rule routing its event types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation::SERVICES;
use constellation_web::host::{EVENT_BUS_VAR, ResourceKind};

fn template() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap()
}

/// The lines of the resource whose `BuildProperties` name `binary`.
fn function_block<'a>(template: &'a str, binary: &str) -> &'a str {
    let marker = format!("Binary: {binary}\n");
    let at = template
        .find(&marker)
        .unwrap_or_else(|| panic!("template.yaml builds no binary {binary}"));
    let start = template[..at].rfind("\n  ").map_or(0, |i| i + 1);
    let end = template[at..]
        .find("\n\n  ")
        .map_or(template.len(), |i| at + i);
    &template[start..end]
}

#[test]
fn every_service_variable_is_set_for_its_functions() {
    let template = template();
    for service in SERVICES {
        let block = function_block(&template, service.name);
        for r in service.resources {
            if r.var == EVENT_BUS_VAR {
                assert!(template.contains(&format!("        {EVENT_BUS_VAR}: !Ref EventBus")));
                continue;
            }
            if matches!(r.kind, ResourceKind::DeadLetterQueue { .. })
                && service.consumers.is_empty()
            {
                continue;
            }
            assert!(
                block.contains(&format!("          {}: ", r.var)),
                "{}: template.yaml does not set {} for the function",
                service.name,
                r.var
            );
        }
    }
}

#[test]
fn schedules_match_the_template() {
    let template = template();
    for service in SERVICES {
        for schedule in service.schedules {
            let block = function_block(&template, schedule.function);
            assert!(
                block.contains(&format!("ScheduleExpression: {}\n", schedule.expression)),
                "{}: template.yaml runs it at another expression than {}",
                schedule.name,
                schedule.expression
            );
            assert!(block.contains("Type: ScheduleV2"));
            assert!(
                block.contains(&format!("{{\"schedule\":\"{}\"", schedule.name)),
                "{}: its Input must name the schedule",
                schedule.name
            );
        }
        for consumer in service.consumers {
            let block = function_block(&template, consumer.name);
            assert!(
                block.contains("ReportBatchItemFailures"),
                "{}",
                consumer.name
            );
            assert!(
                block.contains(&format!("BatchSize: {}", consumer.batch_size)),
                "{}",
                consumer.name
            );
        }
    }
}

#[test]
fn every_subscription_has_a_rule() {
    let template = template();
    for service in SERVICES {
        for sub in service.subscriptions {
            for event in sub.events {
                // The rule's pattern, then (within the same rule) its target.
                let rule = template
                    .split("\n\n")
                    .find(|block| {
                        block.contains("Type: AWS::Events::Rule")
                            && block.contains(&format!("detail-type: [{event}]"))
                    })
                    .unwrap_or_else(|| panic!("{}: no EventBus rule routes {event}", service.name));
                assert!(
                    rule.contains("EventBusName: !Ref EventBus") && rule.contains("Arn: !GetAtt "),
                    "{}: the rule for {event} must be on the bus and target a queue:\n{rule}",
                    service.name
                );
            }
        }
    }
}

#[test]
fn descriptions_are_consistent() {
    for service in SERVICES {
        service.validate().unwrap();
    }
    let mut names: Vec<_> = SERVICES.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SERVICES.len(), "service names are unique");
}

#[test]
fn cargo_lambda_watch_shares_serves_data_dir() {
    for service in SERVICES {
        let manifest = std::fs::read_to_string(format!(
            "{}/functions/{}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR"),
            service.name
        ))
        .unwrap();
        assert!(
            manifest.contains("[package.metadata.lambda.env]")
                && manifest.contains("CONSTELLATION_DATA_DIR = \"../../.constellation\""),
            "functions/{}/Cargo.toml must point `cargo lambda watch` at the repository's .constellation",
            service.name
        );
    }
}

/// An empty `Environment`/`Variables` in a function would replace, not
/// extend, the `Globals` variables when SAM merges them.
#[test]
fn no_function_empties_the_global_environment() {
    let template = template();
    let lines: Vec<&str> = template.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_end();
        if trimmed.ends_with("Environment:") || trimmed.ends_with("Variables:") {
            let indent = line.len() - line.trim_start().len();
            let next = lines.get(i + 1).copied().unwrap_or_default();
            let next_indent = next.len() - next.trim_start().len();
            assert!(
                next_indent > indent && !next.trim().is_empty(),
                "template.yaml line {}: `{}` has nothing under it",
                i + 1,
                trimmed.trim()
            );
        }
    }
}

/// The dashboard and the alarms read only metrics the code emits, with
/// dimension values that exist: service, worker and schedule names.
#[test]
fn dashboard_and_alarms_name_metrics_the_code_emits() {
    use constellation_platform::observe::EMF_METRICS;
    let template = template();
    let services: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
    let workers: Vec<&str> = SERVICES
        .iter()
        .flat_map(|s| s.consumers.iter().map(|c| c.name))
        .collect();
    let schedules: Vec<&str> = SERVICES
        .iter()
        .flat_map(|s| s.schedules.iter().map(|c| c.name))
        .collect();
    // Dashboard metrics: ["Constellation", "<name>", "<dimension>", "<value>", ...
    let mut seen = 0;
    for (at, _) in template.match_indices(r#"["Constellation", ""#) {
        let fields: Vec<&str> = template[at + 2..]
            .split(", ")
            .take(4)
            .map(|f| f.trim_matches('"'))
            .collect();
        let (name, dimension, value) = (fields[1], fields[2], fields[3]);
        assert!(EMF_METRICS.contains(&name), "dashboard reads {name}");
        let known = match dimension {
            "Service" => services.contains(&value),
            "Worker" => workers.contains(&value),
            "Schedule" => schedules.contains(&value),
            "Breaker" => value == "comms-mail",
            other => panic!("dashboard reads {name} by unknown dimension {other}"),
        };
        assert!(
            known,
            "dashboard reads {name} for unknown {dimension} {value}"
        );
        seen += 1;
    }
    // SEARCH expressions: MetricName=\"<name>\".
    for (at, _) in template.match_indices(r#"MetricName=\""#) {
        let rest = &template[at + r#"MetricName=\""#.len()..];
        let name = &rest[..rest.find('\\').unwrap()];
        assert!(EMF_METRICS.contains(&name), "dashboard searches {name}");
        seen += 1;
    }
    // Alarms on the namespace.
    for (at, _) in template.match_indices("Namespace: Constellation\n") {
        let rest = &template[at..];
        let line = rest
            .lines()
            .find(|l| l.trim_start().starts_with("MetricName:"))
            .unwrap();
        let name = line.trim_start().trim_start_matches("MetricName:").trim();
        assert!(EMF_METRICS.contains(&name), "an alarm reads {name}");
        seen += 1;
    }
    assert!(
        seen > 50,
        "found only {seen} metric references: the parsing broke"
    );
}
