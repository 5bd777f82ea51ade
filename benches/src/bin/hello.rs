//! The hello-world `lambda_http` function: the baseline every function's
//! cold start, peak RSS and zip size are compared with. Built with the
//! workspace's release profile, and on the runtime the functions use
//! (tokio's current-thread), so that the comparison is of what a function
//! does beyond it.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_req: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
