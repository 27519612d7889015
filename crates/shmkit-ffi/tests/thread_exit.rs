//! Calls into the C ABI from a thread-local destructor, after shmkit's own
//! thread-local (the last error) is destroyed: statuses still come back, the last
//! error is a fixed message, and nothing aborts ("panic in a function that cannot
//! unwind" was the failure). `tests/c/thread_test.c` does the same from C.

use shmkit_ffi::shmkit_status::*;
use shmkit_ffi::*;
use std::ffi::{CStr, CString};
use std::sync::Mutex;

#[derive(Debug, Default, PartialEq)]
struct Seen {
    create: Option<shmkit_status>,
    bad: Option<shmkit_status>,
    message: String,
    close: Option<shmkit_status>,
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

struct CallsShmkitOnDrop(CString);

impl Drop for CallsShmkitOnDrop {
    fn drop(&mut self) {
        let mut seg: *mut shmkit_shm = std::ptr::null_mut();
        let mut none: *mut shmkit_shm = std::ptr::null_mut();
        // SAFETY: a valid name and output pointers.
        let create = unsafe { shmkit_shm_create(self.0.as_ptr(), 64, 0, &mut seg) };
        // SAFETY: a NULL name is refused, not read.
        let bad = unsafe { shmkit_shm_create(std::ptr::null(), 64, 0, &mut none) };
        // SAFETY: never NULL, NUL-terminated, valid until the next call.
        let message = unsafe { CStr::from_ptr(shmkit_last_error()) }
            .to_string_lossy()
            .into_owned();
        let close = shmkit_shm_close(seg);
        *SEEN.lock().unwrap() = Some(Seen {
            create: Some(create),
            bad: Some(bad),
            message,
            close: Some(close),
        });
    }
}

thread_local! {
    static ON_EXIT: std::cell::RefCell<Option<CallsShmkitOnDrop>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn calls_from_a_thread_local_destructor_do_not_abort() {
    let name = CString::new(format!("thread-exit-{}", std::process::id())).unwrap();
    std::thread::spawn(move || {
        // Registered first, so destroyed last: after the last error's thread-local.
        ON_EXIT.with(|slot| *slot.borrow_mut() = Some(CallsShmkitOnDrop(name)));
        let mut seg: *mut shmkit_shm = std::ptr::null_mut();
        // SAFETY: a valid name and output pointer; makes this thread's last error.
        let missing = unsafe { shmkit_shm_open(c"thread-exit-no-such".as_ptr(), 0, &mut seg) };
        assert_eq!(missing, SHMKIT_ERR_NOT_FOUND);
    })
    .join()
    .expect("the thread ended without a panic");
    let seen = SEEN.lock().unwrap().take().expect("the destructor ran");
    assert_eq!(seen.create, Some(SHMKIT_OK), "{seen:?}");
    assert_eq!(seen.bad, Some(SHMKIT_ERR_NULL_POINTER), "{seen:?}");
    assert_eq!(seen.close, Some(SHMKIT_OK), "{seen:?}");
    assert!(!seen.message.is_empty(), "{seen:?}");
}
