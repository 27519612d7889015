// Async tests of the C# binding (issue 24, item 4): ReceiveAsync, SendAsync, CallAsync,
// RpcServer.ReceiveAsync, Subscriber.ReceiveAsync, NamedMutex.LockAsync,
// NamedSemaphore.WaitAsync, NamedEvent.WaitAsync, awaited without a thread per object,
// and the WaitSet (many objects, one blocking wait):
//  - across processes, C# tasks on both sides (this program run as the child);
//  - cancellation takes nothing: thousands of cancelled receives and waits interleaved
//    with another process's sends, every message and unit arrives once, in order;
//  - a peer SIGKILLed while the other side awaits: Disconnected;
//  - Dispose while awaiting: ObjectDisposedException, for every kind;
//  - hundreds of pending receives add no threads.
// Every wait has a bound, so a bug fails instead of hanging.
// Prints "ok   NAME" or "FAIL NAME: why" per test, then "N passed, N failed".
//
//   mcs -unsafe -r:Shmkit.dll -r:System.Core -out:AsyncTests.exe bindings/csharp/tests/AsyncTests.cs
//   LD_LIBRARY_PATH=target/debug mono AsyncTests.exe [NAME_PREFIX]
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Shmkit;

static class AsyncTests
{
    static string Prefix = "cs-async-" + Process.GetCurrentProcess().Id;
    static int passed, failed;
    static readonly List<string> Names = new List<string>();

    static string Name(string test)
    {
        var name = Prefix + "-" + test;
        Names.Add(name);
        return name;
    }

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

    /// <summary>The task's result, waiting at most seconds (a bug must fail, not hang).</summary>
    static T Within<T>(Task<T> task, int seconds, string what)
    {
        Within((Task)task, seconds, what);
        return task.Result;
    }

    static void Within(Task task, int seconds, string what)
    {
        try
        {
            if (!task.Wait(TimeSpan.FromSeconds(seconds)))
                throw new Failure($"{what}: not done after {seconds} s");
        }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
        }
    }

    /// <summary>Runs body, which must end in exactly a T (or a subclass), within seconds.</summary>
    static T Fails<T>(Task task, int seconds, string what) where T : Exception
    {
        try
        {
            Within(task, seconds, what);
        }
        catch (T e)
        {
            return e;
        }
        catch (Failure)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new Failure($"{what}: {e.GetType().Name} ({e.Message}), expected {typeof(T).Name}");
        }
        throw new Failure($"{what}: succeeded, expected {typeof(T).Name}");
    }

    /// <summary>Runs this program as a child with args (stdout redirected).</summary>
    static Process Child(params string[] args)
    {
        var self = typeof(AsyncTests).Assembly.Location;
        var info = new ProcessStartInfo("mono", "\"" + self + "\" " + string.Join(" ", args.Select(a => "\"" + a + "\"")))
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        return Process.Start(info);
    }

    static void Expect(Process child, string line)
    {
        var read = child.StandardOutput.ReadLineAsync();
        Assert(read.Wait(TimeSpan.FromSeconds(30)), $"the child did not say '{line}' within 30 s");
        Assert(read.Result == line, $"the child said '{read.Result}', expected '{line}'");
    }

    static void Finish(Process child)
    {
        Assert(child.WaitForExit(60000), "the child did not exit");
        var rest = child.StandardOutput.ReadToEnd();
        Assert(child.ExitCode == 0, $"the child exited with {child.ExitCode}: {rest}");
    }

    static void Kill(Process child)
    {
        child.Kill(); // SIGKILL: no cleanup
        child.WaitForExit();
        // A killed process cannot remove its liveness token.
        foreach (var f in System.IO.Directory.GetFiles("/dev/shm", "shmkit-live." + child.Id + ".*")) System.IO.File.Delete(f);
    }

    static byte[] Numbered(int i, int size)
    {
        var m = new byte[size];
        BitConverter.GetBytes(i).CopyTo(m, 0);
        for (int k = 4; k < size; k++) m[k] = (byte)(i + k);
        return m;
    }

    static bool IsNumbered(byte[] m, int i, int size)
    {
        if (m == null || m.Length != size || BitConverter.ToInt32(m, 0) != i) return false;
        for (int k = 4; k < size; k++) if (m[k] != (byte)(i + k)) return false;
        return true;
    }

    static int SizeOf(int i) => 4 + (i * 37) % 900;

    // ---- children: the other process, with tasks too

    /// <summary>Sends n numbered messages with SendAsync into a small ring (so it awaits
    /// room), napping now and then.</summary>
    static async Task<int> SendAsyncChild(string name, int n)
    {
        using (var tx = Sender.Connect(name, new ChannelOptions { Capacity = 4096 }))
        {
            Console.WriteLine("connected");
            var rnd = new Random(n);
            for (int i = 0; i < n; i++)
            {
                await tx.SendAsync(Numbered(i, SizeOf(i)));
                if (rnd.Next(100) == 0) await Task.Delay(rnd.Next(3));
            }
        }
        return 0;
    }

    /// <summary>Serves n calls with RpcServer.ReceiveAsync, answering each reversed.</summary>
    static async Task<int> ServeAsyncChild(string name, int n)
    {
        using (var server = RpcServer.Bind(name))
        {
            Console.WriteLine("bound");
            for (int i = 0; i < n; i++)
            {
                var request = await server.ReceiveAsync();
                server.Reply(request.Reverse().ToArray());
            }
            // Until the client says it is done (its last reply must not meet a closed server).
            await NamedEvent.Open(name + "-done").WaitAsync();
        }
        return 0;
    }

    /// <summary>Ping-pong with the parent: await a unit, set the event; n times. Then
    /// LockAsync a mutex the parent holds.</summary>
    static async Task<int> SyncAsyncChild(string name, int n)
    {
        using (var sem = NamedSemaphore.Open(name + "-sem"))
        using (var ev = NamedEvent.Open(name + "-ev"))
        using (var m = NamedMutex.Open(name + "-mutex"))
        {
            Console.WriteLine("opened");
            for (int i = 0; i < n; i++)
            {
                await sem.WaitAsync();
                ev.Set();
            }
            using (var l = await m.LockAsync()) Console.WriteLine(l.OwnerDied ? "owner died" : "locked");
        }
        return 0;
    }

    /// <summary>Sends 0..n-1 (4 bytes each) with short random pauses.</summary>
    static int SendPlainChild(string name, int n)
    {
        using (var tx = Sender.Connect(name))
        {
            Console.WriteLine("connected");
            var rnd = new Random(1);
            for (int i = 0; i < n; i++)
            {
                tx.Send(BitConverter.GetBytes(i), TimeSpan.FromSeconds(10));
                if (rnd.Next(20) == 0) Thread.Sleep(rnd.Next(3));
            }
        }
        return 0;
    }

    /// <summary>Connects as a sender (or binds an RPC server that never answers), says so,
    /// and sleeps until killed.</summary>
    static int HoldChild(string what, string name)
    {
        if (what == "sender")
        {
            var tx = Sender.Connect(name);
            Console.WriteLine("connected");
            Thread.Sleep(60000);
            GC.KeepAlive(tx);
        }
        else
        {
            var server = RpcServer.Bind(name);
            Console.WriteLine("bound");
            server.Receive(new byte[64], TimeSpan.FromSeconds(30));
            Console.WriteLine("got");
            Thread.Sleep(60000);
            GC.KeepAlive(server);
        }
        return 1;
    }

    // ---- tests

    static void QueueAcrossProcesses()
    {
        const int n = 3000;
        var name = Name("queue");
        using (var rx = Receiver.Connect(name, new ChannelOptions { Capacity = 4096 }))
        {
            var child = Child("send-async", name, n.ToString());
            Expect(child, "connected");
            var got = Within(Task.Run(async () =>
            {
                for (int i = 0; i < n; i++)
                {
                    var m = await rx.ReceiveAsync();
                    if (!IsNumbered(m, i, SizeOf(i)))
                        return $"message {i}: {(m == null ? "null" : m.Length + " bytes, number " + BitConverter.ToInt32(m, 0))}";
                }
                return null;
            }), 120, "receiving 3000 messages");
            Assert(got == null, got);
            Finish(child);
            var e = Fails<ShmkitException>(rx.ReceiveAsync(), 30, "ReceiveAsync after the sender's process ended");
            Assert(e.Status == Status.Disconnected, "expected Disconnected, got " + e.Status);
        }
    }

    static void RpcAcrossProcesses()
    {
        const int n = 500;
        var name = Name("rpc");
        Names.Add(name + "-done");
        using (var done = NamedEvent.Create(name + "-done"))
        {
            var child = Child("serve-async", name, n.ToString());
            Expect(child, "bound");
            using (var client = RpcClient.Connect(name))
            {
                var bad = Within(Task.Run(async () =>
                {
                    for (int i = 0; i < n; i++)
                    {
                        var request = Numbered(i, SizeOf(i) * 6); // some beyond 4096 bytes
                        var reply = await client.CallAsync(request);
                        if (!reply.SequenceEqual(request.Reverse())) return "reply " + i + " is not the request reversed";
                    }
                    return null;
                }), 120, "500 calls");
                Assert(bad == null, bad);
            }
            done.Set();
            Finish(child);
        }
    }

    static void SyncAcrossProcesses()
    {
        const int n = 200;
        var name = Name("sync");
        Names.AddRange(new[] { name + "-sem", name + "-ev", name + "-mutex" });
        using (var sem = NamedSemaphore.Create(name + "-sem", 0, 1))
        using (var ev = NamedEvent.Create(name + "-ev", autoReset: true))
        using (var m = NamedMutex.Create(name + "-mutex"))
        {
            var held = m.Lock(TimeSpan.FromSeconds(5));
            var child = Child("sync-async", name, n.ToString());
            Expect(child, "opened");
            Within(Task.Run(async () =>
            {
                for (int i = 0; i < n; i++)
                {
                    sem.Release();
                    await ev.WaitAsync();
                }
            }), 60, "200 semaphore/event round trips");
            Thread.Sleep(100);
            Assert(!child.HasExited, "the child's LockAsync did not wait for the held mutex");
            held.Dispose();
            Expect(child, "locked");
            Finish(child);
            Assert(sem.Count == 0, "units left: " + sem.Count);
        }
    }

    static void CancellationLosesNothing()
    {
        const int n = 3000;
        var name = Name("cancel");
        int cancelled = 0;
        using (var rx = Receiver.Connect(name))
        {
            var child = Child("send-plain", name, n.ToString());
            Expect(child, "connected");
            var rnd = new Random(7);
            var result = Within(Task.Run(async () =>
            {
                int next = 0;
                while (next < n)
                {
                    using (var cts = new CancellationTokenSource())
                    {
                        // Cancelled at once, soon, or not before the message comes.
                        var r = rnd.Next(4);
                        if (r == 0) cts.Cancel();
                        else if (r == 1) cts.CancelAfter(rnd.Next(2));
                        try
                        {
                            var m = await rx.ReceiveAsync(cts.Token);
                            var got = BitConverter.ToInt32(m, 0);
                            if (got != next) return $"got {got}, expected {next}";
                            next++;
                        }
                        catch (OperationCanceledException)
                        {
                            cancelled++;
                        }
                    }
                }
                return null;
            }), 120, "3000 messages among cancelled receives");
            Assert(result == null, result);
            Assert(cancelled > 100, $"only {cancelled} receives were cancelled: the test did not test much");
            Finish(child);
            var e = Fails<ShmkitException>(rx.ReceiveAsync(), 30, "ReceiveAsync after the last message");
            Assert(e.Status == Status.Disconnected, "nothing more: expected Disconnected, got " + e.Status);
        }

        // Units released on another thread while waits are cancelled: each taken once.
        const int units = 2000;
        using (var sem = NamedSemaphore.Create(Name("cancel-sem"), 0, NamedSemaphore.MaxCount))
        {
            var releasing = Task.Run(() =>
            {
                for (int i = 0; i < units; i++)
                {
                    sem.Release();
                    if (i % 16 == 0) Thread.Sleep(1);
                }
            });
            int taken = 0, waitsCancelled = 0;
            var rnd = new Random(9);
            Within(Task.Run(async () =>
            {
                while (taken < units)
                {
                    using (var cts = new CancellationTokenSource())
                    {
                        if (rnd.Next(3) == 0) cts.Cancel();
                        else cts.CancelAfter(rnd.Next(2));
                        try
                        {
                            await sem.WaitAsync(cts.Token);
                            taken++;
                        }
                        catch (OperationCanceledException)
                        {
                            waitsCancelled++;
                        }
                    }
                }
            }), 120, "2000 units among cancelled waits");
            Within(releasing, 30, "releasing");
            Assert(sem.Count == 0, $"{units} released, {taken} taken, count left {sem.Count}");
            Assert(waitsCancelled > 100, $"only {waitsCancelled} waits were cancelled");
        }
    }

    static void CancelledWaitLeavesTheMessage()
    {
        var name = Name("cancel-one");
        using (var rx = Receiver.Connect(name))
        using (var tx = Sender.Connect(name))
        {
            var cts = new CancellationTokenSource();
            var pending = rx.ReceiveAsync(cts.Token);
            Thread.Sleep(50);
            Assert(!pending.IsCompleted, "ReceiveAsync on an empty queue completed: " + pending.Status);
            cts.Cancel();
            Fails<OperationCanceledException>(pending, 10, "a cancelled ReceiveAsync");
            tx.Send(Encoding.ASCII.GetBytes("kept"));
            // Already cancelled: it does not even look.
            Fails<OperationCanceledException>(rx.ReceiveAsync(cts.Token), 10, "ReceiveAsync with a cancelled token");
            var m = Within(rx.ReceiveAsync(), 10, "the next ReceiveAsync");
            Assert(Encoding.ASCII.GetString(m) == "kept", "got " + Encoding.ASCII.GetString(m));
        }
    }

    static void PeerKilledWhileAwaiting()
    {
        var name = Name("killed");
        using (var rx = Receiver.Connect(name))
        {
            var child = Child("hold", "sender", name);
            Expect(child, "connected");
            var pending = rx.ReceiveAsync();
            Thread.Sleep(100);
            Assert(!pending.IsCompleted, "ReceiveAsync completed before the sender was killed: " + pending.Status);
            Kill(child);
            var e = Fails<ShmkitException>(pending, 20, "ReceiveAsync whose sender was SIGKILLed");
            Assert(e.Status == Status.Disconnected, "expected Disconnected, got " + e.Status + ": " + e.Message);
        }
        var rn = Name("killed-rpc");
        var server = Child("hold", "server", rn);
        Expect(server, "bound");
        using (var client = RpcClient.Connect(rn))
        {
            var call = client.CallAsync(Encoding.ASCII.GetBytes("hello"));
            Expect(server, "got");
            Assert(!call.IsCompleted, "CallAsync completed without a reply: " + call.Status);
            Kill(server);
            var e = Fails<ShmkitException>(call, 20, "CallAsync whose server was SIGKILLed");
            Assert(e.Status == Status.Disconnected, "expected Disconnected, got " + e.Status + ": " + e.Message);
        }
    }

    static void DisposeWhileAwaiting()
    {
        var cases = new List<Tuple<string, Func<Tuple<IDisposable, Task, IDisposable>>>>();
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("Receiver.ReceiveAsync", () =>
        {
            var rx = Receiver.Connect(Name("dispose-rx"));
            return Tuple.Create<IDisposable, Task, IDisposable>(rx, rx.ReceiveAsync(), null);
        }));
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("Sender.SendAsync (ring full)", () =>
        {
            var name = Name("dispose-tx");
            var rx = Receiver.Connect(name, new ChannelOptions { Capacity = 4096 });
            var tx = Sender.Connect(name);
            var block = new byte[512];
            while (true)
            {
                try { tx.Send(block, TimeSpan.Zero); }
                catch (ShmkitException e) when (e.Status == Status.WouldBlock) { break; }
            }
            return Tuple.Create<IDisposable, Task, IDisposable>(tx, tx.SendAsync(block), rx);
        }));
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("Subscriber.ReceiveAsync", () =>
        {
            var name = Name("dispose-sub");
            var sub = Subscriber.Connect(name);
            var pub = Publisher.Connect(name);
            return Tuple.Create<IDisposable, Task, IDisposable>(sub, sub.ReceiveAsync(), pub);
        }));
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("RpcServer.ReceiveAsync", () =>
        {
            var server = RpcServer.Bind(Name("dispose-server"));
            return Tuple.Create<IDisposable, Task, IDisposable>(server, server.ReceiveAsync(), null);
        }));
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("RpcClient.CallAsync (no answer)", () =>
        {
            var name = Name("dispose-client");
            var server = RpcServer.Bind(name);
            var client = RpcClient.Connect(name);
            return Tuple.Create<IDisposable, Task, IDisposable>(client, client.CallAsync(new byte[] { 1 }), server);
        }));
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("NamedMutex.LockAsync (held elsewhere)", () =>
        {
            var name = Name("dispose-mutex");
            var holder = NamedMutex.Create(name);
            var held = holder.Lock(TimeSpan.FromSeconds(5));
            var m = NamedMutex.Open(name);
            return Tuple.Create<IDisposable, Task, IDisposable>(m, m.LockAsync(), new Both(held, holder));
        }));
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("NamedSemaphore.WaitAsync", () =>
        {
            var sem = NamedSemaphore.Create(Name("dispose-sem"), 0, 1);
            return Tuple.Create<IDisposable, Task, IDisposable>(sem, sem.WaitAsync(), null);
        }));
        cases.Add(Tuple.Create<string, Func<Tuple<IDisposable, Task, IDisposable>>>("NamedEvent.WaitAsync", () =>
        {
            var ev = NamedEvent.Create(Name("dispose-ev"));
            return Tuple.Create<IDisposable, Task, IDisposable>(ev, ev.WaitAsync(), null);
        }));
        foreach (var c in cases)
        {
            var made = c.Item2();
            try
            {
                Thread.Sleep(50);
                Assert(!made.Item2.IsCompleted, c.Item1 + " completed before Dispose: " + made.Item2.Status + " " + made.Item2.Exception);
                // From another thread, as a program shutting down would.
                var disposer = new Thread(() => made.Item1.Dispose());
                disposer.Start();
                Fails<ObjectDisposedException>(made.Item2, 10, c.Item1 + " disposed while awaiting");
                Assert(disposer.Join(10000), c.Item1 + ": Dispose did not return");
            }
            finally
            {
                made.Item1.Dispose();
                made.Item3?.Dispose();
            }
        }
    }

    sealed class Both : IDisposable
    {
        readonly IDisposable a, b;
        public Both(IDisposable a, IDisposable b) { this.a = a; this.b = b; }
        public void Dispose() { a.Dispose(); b.Dispose(); }
    }

    static void NoThreadPerObject()
    {
        const int count = 300;
        var receivers = new List<Receiver>();
        var senders = new List<Sender>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                var name = Name("many-" + i);
                receivers.Add(Receiver.Connect(name));
                senders.Add(Sender.Connect(name));
            }
            // Warm up shmkit's own threads and the pool, then count.
            senders[0].Send(new byte[] { 0 });
            Within(receivers[0].ReceiveAsync(), 10, "a first receive");
            Thread.Sleep(200);
            var before = Process.GetCurrentProcess().Threads.Count;
            var pending = receivers.Select(r => r.ReceiveAsync()).ToList();
            Thread.Sleep(500);
            var during = Process.GetCurrentProcess().Threads.Count;
            Assert(pending.All(t => !t.IsCompleted), "a ReceiveAsync on an empty queue completed");
            Assert(during - before < 20, $"{count} pending ReceiveAsync took {during - before} more threads ({before} before, {during} during)");
            for (int i = 0; i < count; i++) senders[i].Send(BitConverter.GetBytes(i));
            Within(Task.WhenAll(pending), 30, $"{count} receives after one message each");
            for (int i = 0; i < count; i++)
                Assert(BitConverter.ToInt32(pending[i].Result, 0) == i, "receiver " + i + " got another's message");
        }
        finally
        {
            foreach (var s in senders) s.Dispose();
            foreach (var r in receivers) r.Dispose();
        }
    }

    static void SameHandleRules()
    {
        var name = Name("busy");
        using (var m = NamedMutex.Create(name))
        using (var l = Within(m.LockAsync(), 10, "LockAsync of a free mutex"))
        {
            Assert(!l.OwnerDied, "a fresh mutex reported its owner died");
            var e = Fails<ShmkitException>(m.LockAsync(), 5, "LockAsync through the NamedMutex that holds it");
            Assert(e.Status == Status.Busy, "expected Busy, got " + e.Status);
        }
        using (var sub = Subscriber.Connect(Name("lag"), new ChannelOptions { Capacity = 4096 }))
        using (var pub = Publisher.Connect(Name("lag")))
        {
            for (int i = 0; i < 100; i++) pub.Publish(new byte[200]);
            var e = Fails<ShmkitException>(sub.ReceiveAsync(), 10, "Subscriber.ReceiveAsync after falling behind");
            Assert(e.Status == Status.Lagged && e.Count > 0, $"expected Lagged with a count, got {e.Status} {e.Count}");
            Assert(Within(sub.ReceiveAsync(), 10, "the next ReceiveAsync").Length == 200, "after the lag: the oldest message still held");
        }
        using (var rx = Receiver.Connect(Name("pollable")))
        using (var tx = Sender.Connect(Name("pollable")))
        using (var d = rx.Pollable())
        {
            Assert(!d.IsInvalid && d.Value != IntPtr.Zero, "Pollable gave no descriptor");
        }
    }

    static void WaitSetOfObjects()
    {
        var name = Name("ws");
        using (var set = new WaitSet())
        using (var rx = Receiver.Connect(name))
        using (var tx = Sender.Connect(name))
        using (var sem = NamedSemaphore.Create(Name("ws-sem"), 0, 5))
        using (var ev = NamedEvent.Create(Name("ws-ev")))
        {
            int irx = set.Add(rx), isem = set.Add(sem), iev = set.Add(ev);
            Assert(irx == 0 && isem == 1 && iev == 2, $"indices {irx} {isem} {iev}");
            Assert(set.Wait(TimeSpan.Zero).Length == 0, "nothing is ready yet");
            Assert(set.Wait(TimeSpan.FromMilliseconds(20)).Length == 0, "nothing is ready in 20 ms");
            tx.Send(new byte[] { 7 });
            sem.Release();
            var ready = set.Wait(TimeSpan.FromSeconds(5));
            Assert(ready.SequenceEqual(new[] { irx, isem }), "ready: " + string.Join(",", ready));
            Assert(set.Wait(TimeSpan.FromSeconds(5)).SequenceEqual(new[] { irx, isem }), "level-triggered: again");
            Assert(rx.Receive(TimeSpan.Zero)[0] == 7 && sem.Wait(TimeSpan.Zero), "take from the ready members");
            ev.Set();
            Assert(set.Wait(TimeSpan.FromSeconds(5)).SequenceEqual(new[] { iev }), "the event");
            ev.Reset();
            // A member disposed from another thread ends a wait without a timeout.
            var waiting = Task.Run(() => set.Wait());
            Thread.Sleep(100);
            Assert(!waiting.IsCompleted, "Wait returned with nothing ready");
            sem.Dispose();
            var gone = Within(waiting, 10, "Wait when a member is disposed");
            Assert(gone.SequenceEqual(new[] { isem }), "the disposed member is reported: " + string.Join(",", gone));
            set.Remove(isem);
            // The set disposed from another thread: ObjectDisposedException.
            waiting = Task.Run(() => set.Wait());
            Thread.Sleep(100);
            set.Dispose();
            Fails<ObjectDisposedException>(waiting, 10, "Wait when the set is disposed");
            // Its members are still open.
            tx.Send(new byte[] { 8 });
            Assert(rx.Receive(TimeSpan.FromSeconds(5))[0] == 8, "the receiver after the set was disposed");
        }
    }

    static int Main(string[] args)
    {
        if (args.Length == 3 && args[0] == "send-async") return SendAsyncChild(args[1], int.Parse(args[2])).GetAwaiter().GetResult();
        if (args.Length == 3 && args[0] == "serve-async") return ServeAsyncChild(args[1], int.Parse(args[2])).GetAwaiter().GetResult();
        if (args.Length == 3 && args[0] == "sync-async") return SyncAsyncChild(args[1], int.Parse(args[2])).GetAwaiter().GetResult();
        if (args.Length == 3 && args[0] == "send-plain") return SendPlainChild(args[1], int.Parse(args[2]));
        if (args.Length == 3 && args[0] == "hold") return HoldChild(args[1], args[2]);
        if (args.Length > 1)
        {
            Console.Error.WriteLine("usage: AsyncTests.exe [NAME_PREFIX]");
            return 2;
        }
        if (args.Length == 1) Prefix = args[0];
        Console.WriteLine("pid " + Process.GetCurrentProcess().Id);
        Run("a queue across processes, SendAsync (awaiting room in a 4 KiB ring) to ReceiveAsync: 3000 messages in order, then Disconnected", QueueAcrossProcesses);
        Run("RPC across processes, CallAsync to a server's ReceiveAsync: 500 calls (requests up to 5 KiB)", RpcAcrossProcesses);
        Run("NamedSemaphore.WaitAsync / NamedEvent.WaitAsync ping-pong across processes; LockAsync waits for a mutex held by the other process", SyncAcrossProcesses);
        Run("cancelled ReceiveAsync and WaitAsync take nothing: 3000 messages from another process and 2000 units each arrive once, in order, among hundreds of cancellations", CancellationLosesNothing);
        Run("a cancelled ReceiveAsync leaves the message for the next one; an already cancelled token does not look", CancelledWaitLeavesTheMessage);
        Run("the peer SIGKILLed while awaiting: ReceiveAsync and CallAsync end in Disconnected", PeerKilledWhileAwaiting);
        Run("Dispose from another thread while awaiting ends every kind of wait in ObjectDisposedException", DisposeWhileAwaiting);
        Run("300 pending ReceiveAsync add no threads, and each gets its own message", NoThreadPerObject);
        Run("WaitSet over a receiver, a semaphore and an event: level-triggered; a member disposed from another thread is reported, the set disposed ends Wait in ObjectDisposedException", WaitSetOfObjects);
        Run("LockAsync through the NamedMutex holding it: Busy; Subscriber.ReceiveAsync reports Lagged; Pollable gives a descriptor", SameHandleRules);
        Cleanup();
        Console.WriteLine($"{passed} passed, {failed} failed");
        Console.Out.Flush();
        return failed == 0 ? 0 : 1;
    }
}
