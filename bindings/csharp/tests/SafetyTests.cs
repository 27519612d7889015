// Lifetime and close tests of the C# binding (issue 22): spans that outlive the
// object they came from, use after Dispose, reservations of a disposed sender, a
// reader thread stopped by Dispose from another thread, locks of a disposed
// mutex, and the Status enum against the C ABI's status codes.
// Prints "ok   NAME" or "FAIL NAME: why" per test, then "N passed, N failed".
//
//   mcs -unsafe -r:Shmkit.dll -out:SafetyTests.exe bindings/csharp/tests/SafetyTests.cs
//   LD_LIBRARY_PATH=target/debug mono SafetyTests.exe [NAME_PREFIX]
using System;
using System.Diagnostics;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using Shmkit;

static class SafetyTests
{
    static string Prefix = "cs-safety-" + Process.GetCurrentProcess().Id;
    static int passed, failed;

    static readonly System.Collections.Generic.List<string> Names = new System.Collections.Generic.List<string>();

    /// <summary>A name unique to this run and test; removed at the end if still there.</summary>
    static string Name(string test)
    {
        var name = Prefix + "-" + test;
        Names.Add(name);
        return name;
    }

    /// <summary>Removes what the tests left (a segment goes with its last handle; objects of a
    /// failed test may stay).</summary>
    static void Cleanup()
    {
        foreach (var name in Names)
        {
            try { SharedMemory.Remove(name); }
            catch (ShmkitException e) when (e.Status == Status.NotFound) { }
            catch (ShmkitException e) { Console.WriteLine($"note: {name} not removed: {e.Message}"); }
        }
    }

    class Failure : Exception
    {
        public Failure(string m) : base(m) { }
    }

    static void Assert(bool condition, string what)
    {
        if (!condition) throw new Failure(what);
    }

    /// <summary>Runs body, which must throw exactly a T (not a subclass of something else).</summary>
    static T Throws<T>(string what, Action body) where T : Exception
    {
        try
        {
            body();
        }
        catch (T e)
        {
            return e;
        }
        catch (Exception e)
        {
            throw new Failure($"{what}: threw {e.GetType().Name} ({e.Message}), expected {typeof(T).Name}");
        }
        throw new Failure($"{what}: did not throw, expected {typeof(T).Name}");
    }

    static void Run(string name, Action test)
    {
        try
        {
            test();
            passed++;
            Console.WriteLine("ok   " + name);
        }
        catch (Exception e)
        {
            failed++;
            var why = e is Failure ? e.Message : e.ToString();
            Console.WriteLine("FAIL " + name + ": " + why.Replace("\n", "\n     "));
        }
        Console.Out.Flush();
    }

    /// <summary>Makes every unreachable object's finalizer run, several times over.</summary>
    static void CollectHard()
    {
        for (int i = 0; i < 5; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    /// <summary>Takes a value so that the expression computing it is not a bare statement.</summary>
    static void Use(int value) { }

    static byte Pattern(int i) => (byte)(i * 31 + 7);

    static void CheckPattern(ReadOnlySpan<byte> span, int length, string what)
    {
        Assert(span.Length == length, $"{what}: {span.Length} bytes, expected {length}");
        for (int i = 0; i < length; i++)
            if (span[i] != Pattern(i)) throw new Failure($"{what}: byte {i} is {span[i]}, expected {Pattern(i)}");
    }

    const int SegmentSize = 1 << 20;

    static SharedMemory CreatePatterned(string name)
    {
        var shm = SharedMemory.Create(name, SegmentSize);
        var bytes = new byte[SegmentSize];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = Pattern(i);
        shm.Write(0, bytes);
        return shm;
    }

    // Opened in a method of its own so that nothing on the caller's stack refers to
    // the SharedMemory: only the view does.
    [MethodImpl(MethodImplOptions.NoInlining)]
    static SharedMemoryView ViewOfUnreachable(string name) => SharedMemory.Open(name).Acquire();

    // A span whose view and SharedMemory are both unreachable (never disposed).
    [MethodImpl(MethodImplOptions.NoInlining)]
    static ReadOnlySpan<byte> SpanOfLeakedView(string name) => SharedMemory.Open(name).Acquire().ReadOnlySpan;

    [MethodImpl(MethodImplOptions.NoInlining)]
    static Span<byte> SpanOfLeakedReservation(string channel, int len) => Sender.Connect(channel).Reserve(len).Span;

    static void ViewSurvivesGc()
    {
        var name = Name("gc");
        using (CreatePatterned(name))
        {
            using (var view = ViewOfUnreachable(name))
            {
                var span = view.ReadOnlySpan;
                for (int round = 0; round < 3; round++)
                {
                    CollectHard();
                    CheckPattern(span, SegmentSize, $"after GC round {round}");
                }
                // Writes through the view reach the segment.
                var writable = view.Span;
                writable[5] = 99;
            }
            using (var check = SharedMemory.Open(name))
            {
                var b = new byte[1];
                check.Read(5, b);
                Assert(b[0] == 99, $"a write through the view was not seen by another handle (read {b[0]})");
            }
        }
    }

    static void LeakedViewSurvivesGc()
    {
        var name = Name("leak");
        using (CreatePatterned(name))
        {
            var span = SpanOfLeakedView(name);
            CollectHard();
            CheckPattern(span, SegmentSize, "after GC");
        }
    }

    static void DisposeThenUse()
    {
        var name = Name("dispose");
        var shm = CreatePatterned(name);
        var view = shm.Acquire();
        var span = view.ReadOnlySpan;
        shm.Dispose();
        shm.Dispose();   // twice: no effect
        Throws<ObjectDisposedException>("Acquire after Dispose", () => shm.Acquire());
        Throws<ObjectDisposedException>("Read after Dispose", () => shm.Read(0, new byte[4]));
        Throws<ObjectDisposedException>("Write after Dispose", () => shm.Write(0, new byte[4]));
        // The open view keeps the memory mapped.
        CollectHard();
        CheckPattern(span, SegmentSize, "a view's span after its SharedMemory was disposed");
        CheckPattern(view.ReadOnlySpan, SegmentSize, "a view after its SharedMemory was disposed");
        view.Dispose();
        view.Dispose();
        Throws<ObjectDisposedException>("view.Span after view.Dispose", () => Use(view.Span.Length));
        Throws<ObjectDisposedException>("view.ReadOnlySpan after view.Dispose", () => Use(view.ReadOnlySpan.Length));
        Throws<ObjectDisposedException>("view.Slice after view.Dispose", () => Use(view.Slice(0, 1).Length));
    }

    static void ReadOnlyView()
    {
        var name = Name("ro");
        using (CreatePatterned(name))
        using (var ro = SharedMemory.Open(name, readOnly: true))
        using (var view = ro.Acquire())
        {
            Assert(!view.Writable, "a read-only segment's view says Writable");
            var e = Throws<InvalidOperationException>("Span of a read-only segment", () => Use(view.Span.Length));
            Assert(e.Message.Contains("read-only"), "message does not say read-only: " + e.Message);
            Throws<InvalidOperationException>("Slice of a read-only segment", () => Use(view.Slice(0, 1).Length));
            CheckPattern(view.ReadOnlySpan, SegmentSize, "ReadOnlySpan of a read-only segment");
            CheckPattern(view.ReadOnlySlice(0, 16), 16, "ReadOnlySlice");
            Throws<ArgumentOutOfRangeException>("ReadOnlySlice past the end", () => Use(view.ReadOnlySlice(SegmentSize - 1, 2).Length));
        }
    }

    static byte[] Receive(Receiver rx)
    {
        var buf = new byte[1 << 16];
        int n = rx.Receive(buf, TimeSpan.FromSeconds(5));
        return buf.Take(n).ToArray();
    }

    static void ReservationAfterSenderDisposed()
    {
        var ch = Name("resv");
        using (var rx = Receiver.Connect(ch))
        {
            var tx = Sender.Connect(ch);
            var r = tx.Reserve(4096);
            var span = r.Span;
            tx.Dispose();
            CollectHard();
            // The ring stays mapped while the reservation is open.
            span.Fill(7);
            var e = Throws<ObjectDisposedException>("Reservation.Span after its Sender was disposed", () => Use(r.Span.Length));
            Assert(e.Message.Contains("Sender"), "message does not name the Sender: " + e.Message);
            Throws<ObjectDisposedException>("Reservation.Commit after its Sender was disposed", () => r.Commit());
            r.Dispose();
            Throws<ObjectDisposedException>("Reservation.Span after Dispose", () => Use(r.Span.Length));
            // The disposed sender has gone now (the queue takes one sender): a new one
            // connects, and its message is the first the receiver gets.
            using (var tx2 = Sender.Connect(ch))
                tx2.Send(Encoding.ASCII.GetBytes("after"));
            var got = Encoding.ASCII.GetString(Receive(rx));
            Assert(got == "after", $"the receiver got '{got}', expected 'after' (the reservation must not have been sent)");
        }
    }

    static void ReservationEndsOnce()
    {
        var ch = Name("once");
        using (var rx = Receiver.Connect(ch))
        using (var tx = Sender.Connect(ch))
        {
            using (var r = tx.Reserve(5))
            {
                Encoding.ASCII.GetBytes("hello").CopyTo(r.Span);
                r.Commit();
                var e = Throws<InvalidOperationException>("Commit twice", () => r.Commit());
                Assert(e.Message.Contains("committed"), "message does not say committed: " + e.Message);
                Throws<InvalidOperationException>("Span after Commit", () => Use(r.Span.Length));
                Throws<InvalidOperationException>("Cancel after Commit", () => r.Cancel());
            }
            var got = Encoding.ASCII.GetString(Receive(rx));
            Assert(got == "hello", $"received '{got}', expected 'hello'");
            var c = tx.Reserve(3);
            c.Cancel();
            Throws<InvalidOperationException>("Commit after Cancel", () => c.Commit());
            c.Dispose();
            var d = tx.Reserve(3);
            d.Dispose();
            Throws<ObjectDisposedException>("Commit after Dispose", () => d.Commit());
            tx.Send(Encoding.ASCII.GetBytes("next"));
            got = Encoding.ASCII.GetString(Receive(rx));
            Assert(got == "next", $"received '{got}', expected 'next' (cancelled reservations must send nothing)");
        }
    }

    static void LeakedReservationSurvivesGc()
    {
        var ch = Name("leakresv");
        using (var rx = Receiver.Connect(ch))
        {
            var span = SpanOfLeakedReservation(ch, 64 * 1024);
            CollectHard();
            span.Fill(1);
            Assert(span[span.Length - 1] == 1, "a write through the span was lost");
        }
    }

    delegate void Blocking();

    /// <summary>Blocks a thread in call, disposes target from this thread, and checks that
    /// the call ends with ObjectDisposedException within a few seconds.</summary>
    static void DisposeWakes(string what, IDisposable target, Blocking call)
    {
        Exception seen = null;
        bool returned = false;
        var started = new ManualResetEventSlim();
        var t = new Thread(() =>
        {
            started.Set();
            try { call(); returned = true; }
            catch (Exception e) { seen = e; }
        });
        t.IsBackground = true;   // if the call never ends, do not hang the whole run
        t.Start();
        started.Wait();
        Thread.Sleep(300);
        Assert(t.IsAlive, $"{what}: the call did not block ({(returned ? "it returned" : seen?.ToString())})");
        var clock = Stopwatch.StartNew();
        target.Dispose();
        bool ended = t.Join(TimeSpan.FromSeconds(5));
        Assert(ended, $"{what}: still blocked 5 s after Dispose from another thread");
        Assert(seen is ObjectDisposedException,
            $"{what}: ended with {(returned ? "a return" : seen.GetType().Name + ": " + seen.Message)}, expected ObjectDisposedException");
        Assert(clock.Elapsed < TimeSpan.FromSeconds(3), $"{what}: took {clock.Elapsed.TotalMilliseconds:F0} ms to wake");
    }

    static void DisposeWakesReceive()
    {
        var ch = Name("wake-recv");
        var rx = Receiver.Connect(ch);
        DisposeWakes("Receiver.Receive", rx, () => rx.Receive(new byte[64]));
        // The role is free at once: a new receiver connects.
        using (var again = Receiver.Connect(ch)) { }
        Throws<ObjectDisposedException>("Receive after Dispose", () => rx.Receive(new byte[64], TimeSpan.Zero));
    }

    static void DisposeWakesReceiveWith()
    {
        var ch = Name("wake-with");
        var rx = Receiver.Connect(ch);
        DisposeWakes("Receiver.ReceiveWith", rx, () => rx.ReceiveWith(m => { }));
        using (var again = Receiver.Connect(ch)) { }
    }

    static void DisposeWakesSubscriber()
    {
        var ch = Name("wake-sub");
        using (var pub = Publisher.Connect(ch))
        {
            var sub = Subscriber.Connect(ch);
            DisposeWakes("Subscriber.Receive", sub, () => sub.Receive(new byte[64]));
        }
    }

    static void DisposeWakesRpcServer()
    {
        var ch = Name("wake-rpc");
        var server = RpcServer.Bind(ch);
        DisposeWakes("RpcServer.ServeOne", server, () => server.ServeOne(r => r));
        using (var again = RpcServer.Bind(ch)) { }
    }

    static void DisposeWakesSend()
    {
        var ch = Name("wake-send");
        using (var rx = Receiver.Connect(ch, new ChannelOptions { Capacity = 64 * 1024 }))
        {
            var tx = Sender.Connect(ch);
            var chunk = new byte[1024];
            // Fill the ring until a send would wait.
            for (int i = 0; ; i++)
            {
                try { tx.Send(chunk, TimeSpan.Zero); }
                catch (ShmkitException e) when (e.Status == Status.WouldBlock || e.Status == Status.Timeout) { break; }
                Assert(i < 10000, "the 64 KiB ring never filled");
            }
            DisposeWakes("Sender.Send (ring full)", tx, () => tx.Send(chunk));
        }
    }

    static void DisposeWakesCall()
    {
        var ch = Name("wake-call");
        using (var server = RpcServer.Bind(ch))   // bound, never serving
        {
            var client = RpcClient.Connect(ch);
            DisposeWakes("RpcClient.Call (no reply)", client, () => client.Call(new byte[] { 1 }));
        }
    }

    static void DisposeWakesLock()
    {
        var name = Name("wake-lock");
        using (var holder = NamedMutex.CreateOrOpen(name))
        using (holder.Lock())
        {
            var waiter = NamedMutex.Open(name);
            DisposeWakes("NamedMutex.Lock", waiter, () => waiter.Lock());
        }
    }

    static void DisposeWakesSemaphore()
    {
        var sem = NamedSemaphore.CreateOrOpen(Name("wake-sem"), 0, 1);
        DisposeWakes("NamedSemaphore.Wait", sem, () => sem.Wait());
    }

    static void DisposeWakesEvent()
    {
        var ev = NamedEvent.CreateOrOpen(Name("wake-event"));
        DisposeWakes("NamedEvent.Wait", ev, () => ev.Wait());
    }

    /// <summary>The child process of StoppedReaderExits: a foreground reader thread
    /// blocked in Receive with no timeout, stopped by Dispose; then the process exits.</summary>
    static int ChildReader(string ch)
    {
        var rx = Receiver.Connect(ch);
        string outcome = "none";
        var t = new Thread(() =>
        {
            try { rx.Receive(new byte[64]); outcome = "returned"; }
            catch (Exception e) { outcome = e.GetType().Name; }
        });
        t.Start();
        Thread.Sleep(300);
        rx.Dispose();
        t.Join(TimeSpan.FromSeconds(5));
        Console.WriteLine("reader: " + outcome);
        return 0;
    }

    static void StoppedReaderExits()
    {
        var ch = Name("child");
        // Under Mono: mono ASSEMBLY ARGS; under .NET the process is the program itself.
        var self = Process.GetCurrentProcess().MainModule.FileName;
        var assembly = typeof(SafetyTests).Assembly.Location;
        bool mono = Type.GetType("Mono.Runtime") != null;
        var info = new ProcessStartInfo(self, (mono ? $"\"{assembly}\" " : "") + $"child-reader {ch}")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        using (var p = Process.Start(info))
        {
            var output = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(15000))
            {
                p.Kill();
                p.WaitForExit();
                // A killed process cannot remove its liveness token.
                if (System.IO.Directory.Exists("/dev/shm"))
                    foreach (var token in System.IO.Directory.GetFiles("/dev/shm", $"shmkit-live.{p.Id}.*"))
                        System.IO.File.Delete(token);
                throw new Failure("the process with a reader thread stopped by Dispose did not exit within 15 s");
            }
            var said = output.Result.Trim();
            Assert(p.ExitCode == 0 && said == "reader: ObjectDisposedException",
                $"child exited with {p.ExitCode}, said '{said}'");
        }
    }

    static void ReentrantReceiveIsBusy()
    {
        var ch = Name("busy");
        using (var rx = Receiver.Connect(ch))
        using (var tx = Sender.Connect(ch))
        {
            tx.Send(new byte[] { 1 });
            tx.Send(new byte[] { 2 });
            Exception inner = null;
            var t = new Thread(() =>
            {
                try { rx.ReceiveWith(m => rx.Receive(new byte[8], TimeSpan.FromSeconds(1)), TimeSpan.FromSeconds(1)); }
                catch (Exception e) { inner = e; }
            });
            t.IsBackground = true;
            t.Start();
            Assert(t.Join(TimeSpan.FromSeconds(10)), "Receive inside a ReceiveWith callback on the same receiver deadlocked");
            Assert(inner is ShmkitException && ((ShmkitException)inner).Status == Status.Busy,
                "expected ShmkitException Busy, got " + (inner == null ? "no exception" : inner.GetType().Name + ": " + inner.Message));
        }
    }

    static void DisposeInsideCallback()
    {
        var ch = Name("dispose-in-callback");
        using (var tx = Sender.Connect(ch))
        {
            var rx = Receiver.Connect(ch);
            tx.Send(new byte[] { 1, 2, 3 });
            int seen = -1;
            Exception thrown = null;
            var t = new Thread(() =>
            {
                try { rx.ReceiveWith(m => { seen = m.Length; rx.Dispose(); }, TimeSpan.FromSeconds(5)); }
                catch (Exception e) { thrown = e; }
            });
            t.IsBackground = true;
            t.Start();
            Assert(t.Join(TimeSpan.FromSeconds(10)), "Dispose inside a ReceiveWith callback deadlocked");
            Assert(seen == 3, $"the callback saw {seen} bytes, expected 3");
            Assert(thrown == null || thrown is ObjectDisposedException,
                "ReceiveWith ended with " + thrown?.GetType().Name + ": " + thrown?.Message);
            Throws<ObjectDisposedException>("Receive after Dispose in the callback", () => rx.Receive(new byte[8], TimeSpan.Zero));
            using (var again = Receiver.Connect(ch)) { }
        }
    }

    static void LockOfDisposedMutex()
    {
        var name = Name("lock");
        using (var other = NamedMutex.CreateOrOpen(name))
        {
            var m = NamedMutex.Open(name);
            var held = m.Lock(TimeSpan.FromSeconds(5));
            m.Dispose();
            Throws<ObjectDisposedException>("Lock after Dispose", () => m.Lock(TimeSpan.Zero));
            // Disposing the mutex does not unlock behind the lock's back.
            var e = Throws<ShmkitException>("another handle's Lock while the lock is held", () => other.Lock(TimeSpan.FromMilliseconds(100)));
            Assert(e.Status == Status.Timeout, "expected Timeout, got " + e.Status);
            held.Dispose();   // must not throw
            held.Dispose();
            using (var l = other.Lock(TimeSpan.FromSeconds(5)))
                Assert(!l.OwnerDied, "the lock released by Dispose reports OwnerDied");
        }
    }

    /// <summary>SHMKIT_ERR_OWNER_DIED -> OwnerDied: one name, one value, both ways.</summary>
    static string Pascal(string native)
    {
        var bare = native.StartsWith("SHMKIT_ERR_") ? native.Substring(11) : native.Substring(7);
        return string.Concat(bare.Split('_').Select(w => w.Substring(0, 1) + w.Substring(1).ToLowerInvariant()));
    }

    static void StatusMatchesNative()
    {
        var native = typeof(Status).Assembly.GetType("Shmkit.Native.shmkit_status", true);
        var expected = Enum.GetNames(native).ToDictionary(Pascal, n => Convert.ToInt64(Enum.Parse(native, n)));
        var actual = Enum.GetNames(typeof(Status)).ToDictionary(n => n, n => Convert.ToInt64(Enum.Parse(typeof(Status), n)));
        var problems = expected.Where(kv => !actual.ContainsKey(kv.Key) || actual[kv.Key] != kv.Value)
            .Select(kv => $"shmkit_status has {kv.Key} = {kv.Value}, Status has " + (actual.ContainsKey(kv.Key) ? actual[kv.Key].ToString() : "no such name"))
            .Concat(actual.Where(kv => !expected.ContainsKey(kv.Key)).Select(kv => $"Status.{kv.Key} = {kv.Value} is not in shmkit_status"))
            .ToList();
        Assert(problems.Count == 0, string.Join("; ", problems));
        foreach (var s in new[] { "Closed", "Busy" })
            Assert(actual.ContainsKey(s), $"Status has no {s}: the C ABI's code is missing from shmkit_status");
    }

    static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "child-reader") return ChildReader(args[1]);
        if (args.Length > 1)
        {
            Console.Error.WriteLine("usage: SafetyTests.exe [NAME_PREFIX]");
            return 2;
        }
        if (args.Length == 1) Prefix = args[0];
        // Who to clean up after if this process has to be killed (a test that hangs).
        Console.WriteLine("pid " + Process.GetCurrentProcess().Id);
        Run("a SharedMemoryView keeps its memory mapped when its SharedMemory is collected (forced GC)", ViewSurvivesGc);
        Run("a span of a view never disposed stays valid across forced GCs", LeakedViewSurvivesGc);
        Run("SharedMemory: use after Dispose throws ObjectDisposedException; an open view still reads; a disposed view throws", DisposeThenUse);
        Run("a read-only segment's view refuses a writable span (InvalidOperationException)", ReadOnlyView);
        Run("Reservation after its Sender was disposed: span still mapped, Span/Commit throw ObjectDisposedException, nothing sent", ReservationAfterSenderDisposed);
        Run("Reservation ends once: Commit/Cancel/Span after Commit or Cancel throw InvalidOperationException, after Dispose ObjectDisposedException", ReservationEndsOnce);
        Run("a span of a reservation never disposed stays valid across forced GCs", LeakedReservationSurvivesGc);
        Run("Dispose from another thread wakes Receiver.Receive (no timeout) with ObjectDisposedException; a new Receiver connects", DisposeWakesReceive);
        Run("Dispose from another thread wakes Receiver.ReceiveWith", DisposeWakesReceiveWith);
        Run("Dispose from another thread wakes Subscriber.Receive", DisposeWakesSubscriber);
        Run("Dispose from another thread wakes RpcServer.ServeOne; the name can be bound again", DisposeWakesRpcServer);
        Run("Dispose from another thread wakes Sender.Send waiting for room", DisposeWakesSend);
        Run("Dispose from another thread wakes RpcClient.Call waiting for its reply", DisposeWakesCall);
        Run("Dispose from another thread wakes NamedMutex.Lock", DisposeWakesLock);
        Run("Dispose from another thread wakes NamedSemaphore.Wait", DisposeWakesSemaphore);
        Run("Dispose from another thread wakes NamedEvent.Wait", DisposeWakesEvent);
        Run("a process whose reader thread was stopped by Dispose exits", StoppedReaderExits);
        Run("Receive inside a ReceiveWith callback on the same receiver: Busy, not a deadlock", ReentrantReceiveIsBusy);
        Run("Dispose inside a ReceiveWith callback: no deadlock, the receiver is closed, its role free", DisposeInsideCallback);
        Run("MutexLock: Dispose after its NamedMutex was disposed unlocks without throwing; the mutex stays locked until then", LockOfDisposedMutex);
        Run("Status has every shmkit_status code, with the same values (incl. Closed = 27, Busy = 28)", StatusMatchesNative);
        Cleanup();
        Console.WriteLine($"{passed} passed, {failed} failed");
        Console.Out.Flush();
        return failed == 0 ? 0 : 1;
    }
}
