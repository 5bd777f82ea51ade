//! Runs the storage conformance suite once per adapter set: every test body
//! in `constellation_testkit::conformance` against SQLite/files and against
//! the AWS SDK adapters talking to moto.

mod conformance_local {
    constellation_testkit::conformance_suite!(constellation_testkit::fixtures::local);
}

mod conformance_aws {
    constellation_testkit::conformance_suite!(constellation_testkit::fixtures::aws);
}
