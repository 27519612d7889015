//! shmkit and Python's `multiprocessing.shared_memory` (standard library only)
//! share memory by the object's OS name, in both directions.

#[cfg(unix)]
mod unix {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    use shmkit::ShmOptions;

    fn name(tag: &str) -> String {
        format!("interop-py-{tag}-{}", std::process::id())
    }

    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = shmkit::Shm::remove_raw(&self.0);
        }
    }

    const PY_CREATES: &str = r#"
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=4096)
msg = b"written by python"
shm.buf[:len(msg)] = msg
print("ready", flush=True)
sys.stdin.readline()
print(bytes(shm.buf[100:100 + int(sys.argv[2])]).decode(), flush=True)
shm.close()
shm.unlink()
"#;

    const PY_ATTACHES: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
# Python 3.8-3.12 would unlink an attached segment at exit; it is not Python's.
resource_tracker.unregister(shm._name, "shared_memory")
print(bytes(shm.buf[:15]).decode(), shm.size, flush=True)
reply = b"python was here"
shm.buf[200:200 + len(reply)] = reply
shm.close()
"#;

    #[test]
    fn shmkit_opens_what_python_created() {
        let n = name("py-creates");
        let _cleanup = Cleanup(format!("/{n}"));
        let mut py = Command::new("python3")
            .args(["-c", PY_CREATES, &n, "16"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let mut out = BufReader::new(py.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");

        // Python names it "/NAME" on POSIX.
        let shm = ShmOptions::new().open_raw(&format!("/{n}")).unwrap();
        assert_eq!(shm.read_vec(0, 17).unwrap(), b"written by python");
        shm.write_at(100, b"shmkit says hello").unwrap();
        writeln!(py.stdin.as_mut().unwrap(), "go").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "shmkit says hell"); // the 16 bytes Python read
        assert!(py.wait().unwrap().success());
    }

    #[test]
    fn python_opens_what_shmkit_created() {
        let n = name("shmkit-creates");
        let os = format!("/{n}");
        let _cleanup = Cleanup(os.clone());
        let shm = ShmOptions::new().size(4096).create_raw(&os).unwrap();
        shm.write_at(0, b"made by shmkit!").unwrap();
        let out = Command::new("python3")
            .args(["-c", PY_ATTACHES, &n])
            .output()
            .expect("python3 is needed for this test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            "made by shmkit! 4096"
        );
        assert_eq!(shm.read_vec(200, 15).unwrap(), b"python was here");
    }
}

#[cfg(windows)]
#[test]
#[ignore = "Python's multiprocessing.shared_memory needs a Windows Python, which Wine here lacks"]
fn python_interop_on_windows() {}
