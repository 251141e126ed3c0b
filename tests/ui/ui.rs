//! Compile-time behaviour of the derives: what must compile, and what must fail with the
//! reviewed error in `tests/ui/fail/*.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
