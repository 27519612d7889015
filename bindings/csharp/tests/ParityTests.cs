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

    static int Main(string[] args)
    {
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
        Cleanup();
        Console.WriteLine($"{passed} passed, {failed} failed");
        Console.Out.Flush();
        return failed == 0 ? 0 : 1;
    }
}
