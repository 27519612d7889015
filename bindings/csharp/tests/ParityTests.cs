// Input checks and parity tests of the C# binding (issue 23, items 3 to 5): names the
// C ABI would see cut or altered are refused, timeouts mean what they say, a callback's
// exception keeps its stack trace, and the C# layer reaches what the C ABI offers under
// names that do not clash with System.Threading.
// Prints "ok   NAME" or "FAIL NAME: why" per test, then "N passed, N failed".
//
//   mcs -unsafe -r:Shmkit.dll -r:System.Core -out:ParityTests.exe bindings/csharp/tests/ParityTests.cs
//   LD_LIBRARY_PATH=target/debug mono ParityTests.exe [NAME_PREFIX]
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using Shmkit;

static class ParityTests
{
    static string Prefix = "cs-parity-" + Process.GetCurrentProcess().Id;
    static int passed, failed;
    static readonly List<string> Names = new List<string>();

    /// <summary>A name unique to this run and test; removed at the end if still there.</summary>
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

    /// <summary>Runs body, which must throw exactly a T (or a subclass).</summary>
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

    static bool Exists(string name)
    {
        try
        {
            SharedMemory.Open(name).Dispose();
            return true;
        }
        catch (ShmkitException e) when (e.Status == Status.NotFound)
        {
            return false;
        }
    }

    // ---- item 3: names and timeouts

    static void NulInNameRefused()
    {
        var stem = Name("nul");
        var e = Throws<ArgumentException>("SharedMemory.Create with a NUL inside the name",
            () => SharedMemory.Create(stem + "\0tail", 4096).Dispose());
        Assert(e.Message.Contains("NUL"), "the message does not name the NUL character: " + e.Message);
        Assert(!Exists(stem), "the part of the name before the NUL was created: " + stem);
        Throws<ArgumentException>("Sender.Connect with a NUL inside the name", () => Sender.Connect(stem + "\0x").Dispose());
        Throws<ArgumentException>("NamedMutex.CreateOrOpen with a NUL inside the name", () => NamedMutex.CreateOrOpen(stem + "\0x").Dispose());
        Assert(!Exists(stem), "something was created under the name cut at the NUL: " + stem);
    }

    static void LoneSurrogateRefused()
    {
        var stem = Name("surrogate");
        foreach (var bad in new[] { stem + "\uD800", stem + "\uDC00x", "\uDBFF" + stem })
        {
            var e = Throws<ArgumentException>("SharedMemory.Create with a lone surrogate",
                () => SharedMemory.Create(bad, 4096).Dispose());
            Assert(e.Message.Contains("surrogate"), "the message does not say 'surrogate': " + e.Message);
        }
        Assert(!Exists(stem + "\uFFFD"), "the lone surrogate became U+FFFD and was created");
        // A proper pair (U+1F600) is fine.
        var good = Name("pair-\uD83D\uDE00");
        using (SharedMemory.Create(good, 4096)) { }
    }

    /// <summary>Runs call on a thread; if it has not returned after 3 s (it waits for ever),
    /// disposes target to end it and fails.</summary>
    static Exception Bounded(string what, IDisposable target, Action call)
    {
        Exception error = null;
        var t = new Thread(() =>
        {
            try { call(); }
            catch (Exception e) { error = e; }
        });
        t.Start();
        if (!t.Join(3000))
        {
            target.Dispose();
            t.Join(10000);
            throw new Failure(what + ": still waiting after 3 s (taken as 'for ever')");
        }
        return error;
    }

    static void NegativeTimeoutRefused()
    {
        using (var rx = Receiver.Connect(Name("negative")))
        {
            var e = Bounded("Receive with a timeout of -5 ms", rx, () => rx.Receive(new byte[16], TimeSpan.FromMilliseconds(-5)));
            Assert(e is ArgumentOutOfRangeException, "Receive(-5 ms): expected ArgumentOutOfRangeException, got " + e);
            Assert(e.Message.Contains("negative"), "the message does not say 'negative': " + e.Message);
        }
        using (var m = NamedMutex.CreateOrOpen(Name("negative-m")))
        using (var other = NamedMutex.Open(Name("negative-m")))
        using (other.Lock(TimeSpan.FromSeconds(5)))
        {
            var e = Bounded("Lock with a timeout of -1 s", m, () => m.Lock(TimeSpan.FromSeconds(-1)));
            Assert(e is ArgumentOutOfRangeException, "Lock(-1 s): expected ArgumentOutOfRangeException, got " + e);
        }
    }

    static void InfiniteTimeSpanWaits()
    {
        var rx = Receiver.Connect(Name("infinite"));
        Exception error = null;
        var t = new Thread(() =>
        {
            try { rx.Receive(new byte[16], Timeout.InfiniteTimeSpan); }
            catch (Exception e) { error = e; }
        });
        t.Start();
        Assert(!t.Join(300), "Receive(Timeout.InfiniteTimeSpan) returned at once: " + error);
        rx.Dispose();
        Assert(t.Join(10000), "Dispose did not end the wait");
        Assert(error is ObjectDisposedException, "expected ObjectDisposedException, got " + error);
    }

    static void SubMillisecondTimeoutWaits()
    {
        using (var rx = Receiver.Connect(Name("subms")))
        using (var tx = Sender.Connect(Name("subms")))
        {
            // Rounded up to 1 ms, it waits (and times out); truncated to 0 it would not wait
            // at all: WouldBlock.
            var e = Throws<ShmkitException>("Receive(0.5 ms) on an empty queue",
                () => rx.Receive(new byte[16], TimeSpan.FromTicks(5000)));
            Assert(e.Status == Status.Timeout, "Receive(0.5 ms) did not wait: " + e.Status + " (" + e.Message + ")");
            var z = Throws<ShmkitException>("Receive(TimeSpan.Zero) on an empty queue",
                () => rx.Receive(new byte[16], TimeSpan.Zero));
            Assert(z.Status == Status.WouldBlock, "Receive(TimeSpan.Zero): " + z.Status);
        }
    }

    class HandlerError : Exception
    {
        public HandlerError() : base("thrown by the handler") { }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void ThrowingHandlerFrame(ReadOnlySpan<byte> message) => throw new HandlerError();

    static void CallbackExceptionKeepsStackTrace()
    {
        var name = Name("stack");
        using (var rx = Receiver.Connect(name))
        using (var tx = Sender.Connect(name))
        {
            tx.Send(new byte[] { 1, 2, 3 });
            var e = Throws<HandlerError>("ReceiveWith whose handler throws", () => rx.ReceiveWith(ThrowingHandlerFrame, TimeSpan.FromSeconds(5)));
            Assert(e.StackTrace != null && e.StackTrace.Contains(nameof(ThrowingHandlerFrame)),
                "the rethrown exception's stack trace lost the handler's frame:\n" + e.StackTrace);
        }
    }

    static void LockTwiceIsBusy()
    {
        using (var m = NamedMutex.CreateOrOpen(Name("twice")))
        using (m.Lock(TimeSpan.FromSeconds(5)))
        {
            var sw = Stopwatch.StartNew();
            var e = Throws<ShmkitException>("a second Lock through the same handle", () => m.Lock(TimeSpan.FromSeconds(5)));
            Assert(e.Status == Status.Busy, "expected Busy, got " + e.Status + ": " + e.Message);
            Assert(sw.ElapsedMilliseconds < 2000, $"the second Lock waited {sw.ElapsedMilliseconds} ms for itself");
        }
    }


    // ---- items 4 and 5: what the C ABI offers, under names that do not clash

    /// <summary>Compiles only if Shmkit's names leave System.Threading's alone (CS0104
    /// "ambiguous reference" otherwise: this file has both usings).</summary>
    static void NoClashWithSystemThreading()
    {
        using (var local = new Semaphore(0, 1))
        using (var named = NamedSemaphore.Create(Name("sem-clash"), 0, 1))
        {
            local.Release();
            Assert(local.WaitOne(0), "System.Threading.Semaphore did not work");
            named.Release();
            Assert(named.Wait(TimeSpan.Zero), "NamedSemaphore.Wait after Release returned false");
        }
        using (var m = new Mutex()) { }
    }

    /// <summary>Each shmkit_* function of the C ABI that the safe layer calls (found in
    /// the IL of Shmkit.dll's methods, lambdas included).</summary>
    static void ReachesEveryCFunction()
    {
        var asm = typeof(SharedMemory).Assembly;
        var native = asm.GetType("Shmkit.Native.NativeMethods", true);
        var all = native.GetMethods(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public)
            .Where(m => m.Name.StartsWith("shmkit_")).Select(m => m.Name).ToList();
        Assert(all.Count > 60, $"only {all.Count} shmkit_ functions found in NativeMethods");
        var called = new HashSet<string>();
        const System.Reflection.BindingFlags every = System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Instance |
            System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.DeclaredOnly;
        foreach (var type in asm.GetTypes())
        {
            if (type == native) continue;
            var methods = type.GetMethods(every).Cast<System.Reflection.MethodBase>().Concat(type.GetConstructors(every));
            foreach (var method in methods)
            {
                var il = method.GetMethodBody()?.GetILAsByteArray();
                if (il == null) continue;
                for (int i = 0; i + 4 < il.Length; i++)
                {
                    if (il[i] != 0x28) continue;   // call <token>
                    int token = BitConverter.ToInt32(il, i + 1);
                    if ((token >> 24) != 0x06) continue;   // a MethodDef of this assembly
                    try
                    {
                        var target = type.Module.ResolveMethod(token);
                        if (target.DeclaringType == native) called.Add(target.Name);
                    }
                    catch (ArgumentException) { }
                }
            }
        }
        var missing = all.Where(n => !called.Contains(n)).OrderBy(n => n).ToList();
        Assert(missing.Count == 0, $"{missing.Count} C ABI functions have no C# way in: " + string.Join(", ", missing));
    }

    static void FlagsMatchNative()
    {
        var native = typeof(SharedMemory).Assembly.GetType("Shmkit.Native.NativeMethods", true);
        var expected = new Dictionary<string, ChannelFlags>
        {
            ["SHMKIT_CHANNEL_PERSISTENT"] = ChannelFlags.Persistent, ["SHMKIT_CHANNEL_BUSY_POLL"] = ChannelFlags.BusyPoll,
            ["SHMKIT_CHANNEL_HISTORY"] = ChannelFlags.History, ["SHMKIT_CHANNEL_CREATE_NEW"] = ChannelFlags.CreateNew,
            ["SHMKIT_CHANNEL_OPEN_EXISTING"] = ChannelFlags.OpenExisting,
        };
        var constants = native.GetFields(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public)
            .Where(f => f.Name.StartsWith("SHMKIT_CHANNEL_")).ToList();
        Assert(constants.Count == expected.Count, "NativeMethods has channel flags ChannelFlags lacks: " + string.Join(", ", constants.Select(f => f.Name).Where(n => !expected.ContainsKey(n))));
        foreach (var f in constants)
            Assert(Convert.ToUInt32(f.GetValue(null)) == (uint)expected[f.Name], $"{f.Name} = {f.GetValue(null)}, ChannelFlags.{expected[f.Name]} = {(uint)expected[f.Name]}");
        var access = new Dictionary<string, SharedMemoryAccess>
        {
            ["SHMKIT_ACCESS_READ_WRITE"] = SharedMemoryAccess.ReadWrite, ["SHMKIT_ACCESS_READ_ONLY"] = SharedMemoryAccess.ReadOnly,
            ["SHMKIT_ACCESS_COPY_ON_WRITE"] = SharedMemoryAccess.CopyOnWrite,
        };
        foreach (var kv in access)
            Assert(Convert.ToUInt32(native.GetField(kv.Key, System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic).GetValue(null)) == (uint)kv.Value, kv.Key + " differs");
    }

    static void ChannelFlagsAndSenders()
    {
        var name = Name("flags");
        Throws<ShmkitException>("OpenExisting on a channel that is not there", () => Receiver.Connect(name, new ChannelOptions { Flags = ChannelFlags.OpenExisting }).Dispose());
        using (var rx = Receiver.Connect(name, new ChannelOptions { Flags = ChannelFlags.CreateNew }))
        using (var tx = Sender.Connect(name))
        {
            var e = Throws<ShmkitException>("a second sender on a queue made with the default options", () => Sender.Connect(name).Dispose());
            Assert(e.Status == Status.Occupied, "expected Occupied, got " + e.Status);
        }
        var two = Name("two-senders");
        using (var rx = Receiver.Connect(two, new ChannelOptions { MaxSenders = 2 }))
        using (var a = Sender.Connect(two))
        using (var b = Sender.Connect(two))
        {
            a.Send(new byte[] { 1 });
            b.Send(new byte[] { 2 });
            Assert(rx.Receive(TimeSpan.FromSeconds(5))[0] == 1 && rx.Receive(TimeSpan.FromSeconds(5))[0] == 2, "two senders' messages");
        }
        var ae = Throws<ArgumentException>("MaxSubscribers on a queue", () => Sender.Connect(Name("wrong-option"), new ChannelOptions { MaxSubscribers = 3 }).Dispose());
        Assert(ae.Message.Contains("MaxSenders"), "the message does not point to MaxSenders: " + ae.Message);
        Throws<ArgumentException>("MaxSenders on a broadcast channel", () => Subscriber.Connect(Name("wrong-option2"), new ChannelOptions { MaxSenders = 3 }).Dispose());
    }

    static void SegmentCreateOrOpen()
    {
        var name = Name("coo");
        int runs = 0;
        using (var a = SharedMemory.CreateOrOpen(name, 4096, out bool created, init: data => { runs++; data[0] = 7; data[4095] = 9; }))
        using (var b = SharedMemory.CreateOrOpen(name, 4096, out bool created2, init: data => runs++))
        {
            Assert(created && !created2, $"created: {created}, then {created2}");
            Assert(runs == 1, $"init ran {runs} times");
            var buf = new byte[4096];
            b.Read(0, buf);
            Assert(buf[0] == 7 && buf[4095] == 9, "the second handle does not see what init wrote");
            var info = SharedMemory.Inspect(name);
            Assert(info.Size == 4096 && info.State == SegmentState.Ready && info.CreatorPid == (uint)Process.GetCurrentProcess().Id && !info.Persistent,
                $"Inspect: size {info.Size}, state {info.State}, creator {info.CreatorPid}, persistent {info.Persistent}");
            using (var cow = SharedMemory.Open(name, SharedMemoryAccess.CopyOnWrite))
            {
                cow.Write(0, new byte[] { 100 });
                b.Read(0, buf);
                Assert(buf[0] == 7, "a copy-on-write handle's write reached the segment");
            }
        }
        var failing = Name("coo-fail");
        var e = Throws<InvalidOperationException>("CreateOrOpen whose init throws", () => SharedMemory.CreateOrOpen(failing, 4096, init: data => throw new InvalidOperationException("init failed on purpose")).Dispose());
        Assert(e.Message == "init failed on purpose", "another exception: " + e.Message);
        Assert(!Exists(failing), "a segment whose init threw was left under its name");
        Assert(Library.Version.Split('.').Length == 3, "Library.Version: " + Library.Version);
        Assert(Library.StatusName(Status.Timeout) == "SHMKIT_ERR_TIMEOUT", "StatusName: " + Library.StatusName(Status.Timeout));
    }

    static void SyncCreateOpenTry()
    {
        var sn = Name("sem");
        using (var s = NamedSemaphore.Create(sn, 2, 5))
        using (var o = NamedSemaphore.Open(sn))
        {
            Assert(o.Count == 2, "Count: " + o.Count);
            Assert(o.Wait(TimeSpan.Zero) && o.Wait(TimeSpan.Zero), "two units");
            Assert(!o.Wait(TimeSpan.Zero), "Wait(TimeSpan.Zero) with no unit returned true");
            var e = Throws<ShmkitException>("Create of an existing semaphore", () => NamedSemaphore.Create(sn, 0, 1).Dispose());
            Assert(e.Status == Status.AlreadyExists, "expected AlreadyExists, got " + e.Status);
        }
        Throws<ShmkitException>("Open of a missing semaphore", () => NamedSemaphore.Open(Name("no-sem")).Dispose());
        var en = Name("event");
        using (var ev = NamedEvent.Create(en, initiallySet: true))
        using (var o = NamedEvent.Open(en))
        {
            Assert(o.IsSet, "an event created set is not set");
            o.Reset();
            Assert(!ev.IsSet && !ev.Wait(TimeSpan.Zero), "after Reset");
        }
        var mn = Name("mutex");
        using (var m = NamedMutex.Create(mn))
        using (var other = NamedMutex.Open(mn))
        {
            using (var l = m.TryLock())
            {
                Assert(l != null && !l.OwnerDied, "TryLock of a free mutex");
                Assert(other.TryLock() == null, "TryLock through another handle while it is held");
                var e = Throws<ShmkitException>("TryLock through the handle that holds it", () => m.TryLock());
                Assert(e.Status == Status.Busy, "expected Busy, got " + e.Status);
            }
            using (var l = other.TryLock()) Assert(l != null, "TryLock after the lock was released");
        }
    }

    static void SubscriberReceiveWith()
    {
        var name = Name("bcast");
        using (var sub = Subscriber.Connect(name, new ChannelOptions { MaxSubscribers = 2 }))
        using (var pub = Publisher.Connect(name))
        {
            pub.Publish(Encoding.ASCII.GetBytes("lent"));
            pub.Publish(Encoding.ASCII.GetBytes("copied"));
            string got = null;
            sub.ReceiveWith(m => got = Encoding.ASCII.GetString(m.ToArray()), TimeSpan.FromSeconds(5));
            Assert(got == "lent", "ReceiveWith lent " + got);
            Assert(Encoding.ASCII.GetString(sub.Receive(TimeSpan.FromSeconds(5))) == "copied", "Receive() into an array");
        }
    }

    static void RpcBuffers()
    {
        var name = Name("rpc");
        using (var server = RpcServer.Bind(name))
        using (var client = RpcClient.Connect(name))
        {
            var serving = new Thread(() =>
            {
                var buf = new byte[64];
                for (int i = 0; i < 2; i++)
                {
                    server.Receive(buf, TimeSpan.FromSeconds(10));
                    server.Reply(Enumerable.Repeat((byte)'x', buf[0]).ToArray());
                }
            });
            serving.Start();
            var reply = new byte[4];
            var e = Throws<ShmkitException>("a 10-byte reply into 4 bytes", () => client.Call(new byte[] { 10 }, reply, TimeSpan.FromSeconds(10)));
            Assert(e.Status == Status.BufferTooSmall && e.Count == 10, $"{e.Status}, Count {e.Count}");
            var whole = new byte[10];
            Assert(client.LastReply(whole) == 10 && whole.All(b => b == 'x'), "LastReply");
            int lent = -1;
            client.CallWith(new byte[] { 3 }, m => lent = m.Length, TimeSpan.FromSeconds(10));
            Assert(lent == 3, "CallWith lent " + lent + " bytes");
            Assert(serving.Join(10000), "the server thread did not finish");
        }
    }

    static void Adapters()
    {
        var os = "/" + Name("posix-sem");
        try
        {
            using (var a = PosixSemaphore.Create(os, 0, exclusive: true))
            using (var b = PosixSemaphore.Open(os))
            {
                Assert(!b.Wait(TimeSpan.FromMilliseconds(10)), "a POSIX semaphore at 0 let a wait through");
                a.Post();
                Assert(b.Wait(TimeSpan.FromSeconds(5)), "the post through the other handle did not arrive");
            }
        }
        finally
        {
            PosixSemaphore.Remove(os);
        }
        Throws<ShmkitException>("PosixSemaphore.Open after Remove", () => PosixSemaphore.Open(os).Dispose());
        if (Environment.OSVersion.Platform == PlatformID.Unix)
        {
            foreach (var call in new Action[]
            {
                () => Win32Semaphore.Create("Local\\" + Name("w"), 0, 1).Dispose(),
                () => Win32Mutex.Create("Local\\" + Name("w")).Dispose(),
                () => Win32Event.Create("Local\\" + Name("w")).Dispose(),
            })
            {
                var e = Throws<ShmkitException>("a Win32 adapter on Linux", call);
                Assert(e.Status == Status.Unsupported, "expected Unsupported, got " + e.Status);
            }
        }
    }



    /// <summary>TimeSpan.Zero is "do not wait" everywhere: WouldBlock, or false for Wait.</summary>
    static void ZeroTimeoutIsWouldBlock()
    {
        var name = Name("zero");
        using (var sub = Subscriber.Connect(name))
        using (var pub = Publisher.Connect(name))
        {
            var e = Throws<ShmkitException>("Subscriber.Receive(TimeSpan.Zero) with nothing new", () => sub.Receive(new byte[16], TimeSpan.Zero));
            Assert(e.Status == Status.WouldBlock, "Subscriber.Receive(TimeSpan.Zero): " + e.Status);
        }
        using (var sem = NamedSemaphore.Create(Name("zero-sem"), 0, 1))
            Assert(!sem.Wait(TimeSpan.Zero), "NamedSemaphore.Wait(TimeSpan.Zero) at count 0");
        using (var ev = NamedEvent.Create(Name("zero-ev")))
            Assert(!ev.Wait(TimeSpan.Zero), "NamedEvent.Wait(TimeSpan.Zero) unset");
    }

    static void CreateNewWithOpenExistingRefused()
    {
        var name = Name("both-flags");
        var e = Throws<ShmkitException>("ChannelFlags.CreateNew | OpenExisting", () => Receiver.Connect(name, new ChannelOptions { Flags = ChannelFlags.CreateNew | ChannelFlags.OpenExisting }).Dispose());
        Assert(e.Status == Status.InvalidArgument, "expected InvalidArgument, got " + e.Status + ": " + e.Message);
    }

    // ---- item 2: a mutex, semaphore and event inside a segment

    static void SyncInSegment()
    {
        var name = Name("in-seg");
        NamedMutex m;
        NamedSemaphore sem;
        NamedEvent ev;
        using (var shm = SharedMemory.Create(name, 4096))
        {
            m = NamedMutex.InitIn(shm, 0);
            sem = NamedSemaphore.InitIn(shm, SharedMemory.SyncObjectSize, 1, 3);
            ev = NamedEvent.InitIn(shm, 2 * SharedMemory.SyncObjectSize, initiallySet: true);
            var e = Throws<ShmkitException>("OpenIn where nothing was initialised", () => NamedMutex.OpenIn(shm, 1024).Dispose());
            Assert(e.Status == Status.Corrupt, "expected Corrupt, got " + e.Status);
            e = Throws<ShmkitException>("a mutex opened where a semaphore is", () => NamedMutex.OpenIn(shm, SharedMemory.SyncObjectSize).Dispose());
            Assert(e.Status == Status.Mismatch, "expected Mismatch, got " + e.Status);
        }
        // The segment's SharedMemory is disposed: the objects keep it mapped.
        using (m)
        using (sem)
        using (ev)
        using (var shm = SharedMemory.Open(name))
        using (var m2 = NamedMutex.OpenIn(shm, 0))
        using (var sem2 = NamedSemaphore.OpenIn(shm, SharedMemory.SyncObjectSize))
        using (var ev2 = NamedEvent.OpenIn(shm, 2 * SharedMemory.SyncObjectSize))
        {
            using (m.Lock(TimeSpan.FromSeconds(5)))
                Assert(m2.TryLock() == null, "the mutex in the segment, held through one handle, was free through another");
            using (var l = m2.TryLock()) Assert(l != null, "not free after unlock");
            Assert(sem2.Count == 1 && sem.Wait(TimeSpan.Zero) && sem2.Count == 0, "the semaphore's count is not shared");
            Assert(ev2.IsSet, "the event was initialised set");
        }
    }

    /// <summary>Runs this program as a child with args; returns it (stdout redirected).</summary>
    static Process Child(params string[] args)
    {
        var self = typeof(ParityTests).Assembly.Location;
        var info = new ProcessStartInfo("mono", "\"" + self + "\" " + string.Join(" ", args.Select(a => "\"" + a + "\"")))
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        return Process.Start(info);
    }

    /// <summary>Child: locks the mutex at offset 0 of persistent segment name, half-updates
    /// the data after it, says "locked" and sleeps until killed.</summary>
    static int HoldInSegment(string name)
    {
        var shm = SharedMemory.Open(name);
        var m = NamedMutex.OpenIn(shm, 0);
        var held = m.Lock(TimeSpan.FromSeconds(10));
        shm.Write(SharedMemory.SyncObjectSize, Encoding.ASCII.GetBytes("half"));
        Console.WriteLine("locked");
        Console.Out.Flush();
        Thread.Sleep(60000);
        GC.KeepAlive(held);
        return 1;
    }

    /// <summary>Child: opens the segment and its mutex afresh and locks it; says "owner-died"
    /// or "clean".</summary>
    static int LockInSegment(string name)
    {
        using (var shm = SharedMemory.Open(name))
        using (var m = NamedMutex.OpenIn(shm, 0))
        using (var l = m.Lock(TimeSpan.FromSeconds(10)))
        {
            Console.WriteLine(l.OwnerDied ? "owner-died" : "clean");
            if (l.OwnerDied) l.MarkConsistent();
        }
        return 0;
    }

    static void OwnerDeathInPersistentSegment()
    {
        var name = Name("persist");
        // Made and left: no process has the segment or the mutex open in between.
        using (var shm = SharedMemory.Create(name, 4096, persistent: true))
        using (NamedMutex.InitIn(shm, 0)) { }
        var holder = Child("hold-in", name);
        try
        {
            var line = holder.StandardOutput.ReadLine();
            Assert(line == "locked", "the holder said: " + line);
        }
        finally
        {
            holder.Kill();   // SIGKILL: no unlock, no cleanup
            holder.WaitForExit();
        }
        // A killed process cannot remove its liveness token.
        foreach (var f in System.IO.Directory.GetFiles("/dev/shm", "shmkit-live." + holder.Id + ".*")) System.IO.File.Delete(f);
        var later = Child("lock-in", name);
        var said = later.StandardOutput.ReadToEnd().Trim();
        later.WaitForExit();
        Assert(said == "owner-died", "a process started after the holder was killed locked the mutex in the persistent segment and saw: '" + said + "', expected owner-died");
        var again = Child("lock-in", name);
        said = again.StandardOutput.ReadToEnd().Trim();
        again.WaitForExit();
        Assert(said == "clean", "after MarkConsistent the next locker saw: " + said);
    }

    static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "hold-in") return HoldInSegment(args[1]);
        if (args.Length == 2 && args[0] == "lock-in") return LockInSegment(args[1]);
        if (args.Length > 1)
        {
            Console.Error.WriteLine("usage: ParityTests.exe [NAME_PREFIX]");
            return 2;
        }
        if (args.Length == 1) Prefix = args[0];
        Console.WriteLine("pid " + Process.GetCurrentProcess().Id);
        Run("a name with an embedded NUL is refused (ArgumentException naming it), nothing is created under the cut name", NulInNameRefused);
        Run("a name with a lone surrogate is refused (ArgumentException), not turned into U+FFFD", LoneSurrogateRefused);
        Run("a negative timeout (other than Timeout.InfiniteTimeSpan) is an ArgumentOutOfRangeException", NegativeTimeoutRefused);
        Run("Timeout.InfiniteTimeSpan waits for ever (until Dispose)", InfiniteTimeSpanWaits);
        Run("a sub-millisecond timeout waits (rounded up to 1 ms: Timeout), TimeSpan.Zero does not (WouldBlock)", SubMillisecondTimeoutWaits);
        Run("an exception thrown by a ReceiveWith handler is rethrown with the handler's stack frame", CallbackExceptionKeepsStackTrace);
        Run("locking a NamedMutex twice through one handle: ShmkitException Busy at once, not a wait for itself", LockTwiceIsBusy);
        Run("Shmkit's names compile beside System.Threading's (Semaphore, Mutex: no CS0104)", NoClashWithSystemThreading);
        Run("the C# layer calls every shmkit_* function of the C ABI (NativeMethods.g.cs)", ReachesEveryCFunction);
        Run("ChannelFlags and SharedMemoryAccess match the C ABI's constants", FlagsMatchNative);
        Run("ChannelFlags CreateNew/OpenExisting; a queue admits one sender unless MaxSenders says more; the wrong option is an ArgumentException", ChannelFlagsAndSenders);
        Run("SharedMemory.CreateOrOpen runs init once, rethrows its exception leaving nothing; Inspect; Open(CopyOnWrite); Library.Version", SegmentCreateOrOpen);
        Run("NamedSemaphore/NamedEvent/NamedMutex Create, Open, Count, IsSet; TimeSpan.Zero waits are false; TryLock (null, Busy)", SyncCreateOpenTry);
        Run("Subscriber.ReceiveWith lends a message, Receive() copies one", SubscriberReceiveWith);
        Run("RpcClient.Call into a buffer (BufferTooSmall, LastReply), CallWith; RpcServer.Receive/Reply", RpcBuffers);
        Run("PosixSemaphore across two handles, Remove; the Win32 adapters say Unsupported on Linux", Adapters);
        Run("TimeSpan.Zero does not wait, everywhere: Subscriber.Receive WouldBlock, NamedSemaphore/NamedEvent.Wait false", ZeroTimeoutIsWouldBlock);
        Run("ChannelFlags.CreateNew | OpenExisting together is refused (InvalidArgument)", CreateNewWithOpenExistingRefused);
        Run("NamedMutex/NamedSemaphore/NamedEvent InitIn/OpenIn a segment, shared across handles, kept mapped after the SharedMemory is disposed; Corrupt, Mismatch", SyncInSegment);
        Run("a mutex in a persistent segment: its holder (a C# process) SIGKILLed, a process started afterwards opens segment and mutex and gets OwnerDied", OwnerDeathInPersistentSegment);
        Cleanup();
        Console.WriteLine($"{passed} passed, {failed} failed");
        Console.Out.Flush();
        return failed == 0 ? 0 : 1;
    }
}
