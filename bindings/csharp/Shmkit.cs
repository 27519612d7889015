// Shmkit.cs: the safe C# layer over the shmkit C ABI (NativeMethods.g.cs, made
// by csbindgen). Handles are SafeHandles (IDisposable: `using`), bytes go in and
// out as Span<byte>/ReadOnlySpan<byte>, failures throw ShmkitException carrying
// the status and the message naming the object and the cause.
//
// Lifetimes. A span over native memory is only handed out by an object that keeps
// that memory mapped while it lives: a SharedMemoryView (SharedMemory.Acquire) or
// a Reservation (Sender.Reserve). Each holds a reference on its owner's SafeHandle
// (DangerousAddRef), so neither Dispose of the owner nor its finalizer can unmap
// the memory before the view or reservation is disposed. Calls, by contrast, hold
// no such reference while they run: Dispose() from another thread closes the
// native handle at once, which wakes a call blocked on it (it then throws
// ObjectDisposedException); the C ABI keeps the object alive until its in-flight
// calls have returned, so closing early never frees memory a call still uses.
//
// Awaiting (ReceiveAsync, SendAsync, CallAsync, LockAsync, WaitAsync...) uses no
// thread per object: the C ABI's shmkit_*_on_ready calls back from shmkit's
// reactor thread, which completes a TaskCompletionSource (continuations run on
// the thread pool, never on that thread). The async methods sit in the safe
// partial parts of the classes at the end of this file (await is not allowed in
// an unsafe context).
//
// Build (Mono): mcs -unsafe -target:library -out:Shmkit.dll NativeMethods.g.cs Shmkit.cs
// Run: the native library (libshmkit_ffi.so / shmkit_ffi.dll) must be on the
// loader's path (LD_LIBRARY_PATH on Linux, beside the .exe on Windows).
using System;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Shmkit.Native;

namespace Shmkit
{
    /// <summary>What a call returned (the C ABI's shmkit_status; a test checks that
    /// the names and values match the generated <c>shmkit_status</c>).</summary>
    public enum Status
    {
        Ok = 0, InvalidArgument = 1, NullPointer = 2, BadHandle = 3, InvalidUtf8 = 4,
        NotFound = 5, AlreadyExists = 6, PermissionDenied = 7, OutOfSpace = 8, OutOfBounds = 9,
        Mismatch = 10, Corrupt = 11, Truncated = 12, InitFailed = 13, Timeout = 14,
        WouldBlock = 15, Disconnected = 16, Lagged = 17, OwnerDied = 18, Occupied = 19,
        TooLong = 20, BufferTooSmall = 21, AboveMaximum = 22, Unsupported = 23, Callback = 24,
        Internal = 25, Os = 26,
        /// <summary>The handle was closed while the call was blocked on it. The safe
        /// layer reports it as <see cref="ObjectDisposedException"/>.</summary>
        Closed = 27,
        /// <summary>A call re-entered a handle the same thread is using (e.g. from
        /// inside a receive callback).</summary>
        Busy = 28,
        /// <summary>Queue messages were lost before this receive: a receiver died while it
        /// read messages too long to hold (more than half the ring). Reported once; the
        /// next receive goes on with the next message.</summary>
        Lost = 29,
    }

    /// <summary>A failed call: the status and the message naming the object and cause.</summary>
    public class ShmkitException : Exception
    {
        /// <summary>What the C ABI returned.</summary>
        public Status Status { get; }
        /// <summary>Lagged: messages missed. BufferTooSmall: bytes needed.</summary>
        public ulong Count { get; }
        /// <summary>A failure with <paramref name="status"/> and the C ABI's message.</summary>
        public ShmkitException(Status status, string message, ulong count = 0) : base(message)
        {
            Status = status;
            Count = count;
        }
    }

    /// <summary>Conversions every class uses.</summary>
    internal static unsafe class Interop
    {
        internal static string LastError() => String(NativeMethods.shmkit_last_error());

        /// <summary>A NUL-terminated UTF-8 string from the C ABI.</summary>
        internal static string String(byte* p)
        {
            int n = 0;
            while (p[n] != 0) n++;
            return Encoding.UTF8.GetString(p, n);
        }

        /// <summary>For calls that have no object yet (create, open, remove).</summary>
        internal static Status Check(shmkit_status s, ulong count = 0)
        {
            if (s != shmkit_status.SHMKIT_OK) throw new ShmkitException((Status)s, LastError(), count);
            return Status.Ok;
        }

        /// <summary>Throws on a lone surrogate instead of writing U+FFFD.</summary>
        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>A name as the C ABI takes it: NUL-terminated UTF-8. Refuses what C
        /// would see differently from the string given: an embedded NUL (C would cut
        /// the name there) and a lone surrogate (not Unicode: no UTF-8 for it), as the
        /// C ABI refuses bad UTF-8.</summary>
        internal static byte[] Utf8(string s, string param = "name")
        {
            if (s == null) throw new ArgumentNullException(param);
            int nul = s.IndexOf('\0');
            if (nul >= 0)
                throw new ArgumentException($"the name \"{Printable(s)}\" has a NUL character (U+0000) at index {nul}: C would cut the name there", param);
            try
            {
                var bytes = new byte[StrictUtf8.GetByteCount(s) + 1];
                StrictUtf8.GetBytes(s, 0, s.Length, bytes, 0);
                return bytes;
            }
            catch (EncoderFallbackException e)
            {
                var unit = e.CharUnknown != '\0' ? e.CharUnknown : e.CharUnknownHigh;
                throw new ArgumentException($"the name \"{Printable(s)}\" has a lone surrogate (U+{(int)unit:X4}) at index {e.Index}: it is not valid Unicode and has no UTF-8 form", param, e);
            }
        }

        /// <summary>A name for a message, with NULs and surrogates written as \uXXXX.</summary>
        static string Printable(string s)
        {
            var b = new StringBuilder(s.Length);
            foreach (var c in s)
            {
                if (c == '\0' || char.IsSurrogate(c) || char.IsControl(c)) b.AppendFormat("\\u{0:X4}", (int)c);
                else b.Append(c);
            }
            return b.ToString();
        }

        /// <summary>A timeout in the C ABI's milliseconds: null or Timeout.InfiniteTimeSpan
        /// waits for ever (-1), TimeSpan.Zero does not wait (0), anything else waits at
        /// least that long (a fraction of a millisecond rounds up: it must not become
        /// "do not wait"). Other negative values are refused: they would wait for ever.</summary>
        internal static long Ms(TimeSpan? t, string param = "timeout")
        {
            if (!t.HasValue || t.Value == Timeout.InfiniteTimeSpan) return -1;
            var ticks = t.Value.Ticks;
            if (ticks < 0)
                throw new ArgumentOutOfRangeException(param, t.Value, "a timeout cannot be negative: use null or Timeout.InfiniteTimeSpan to wait for ever, TimeSpan.Zero not to wait");
            return ticks / TimeSpan.TicksPerMillisecond + (ticks % TimeSpan.TicksPerMillisecond != 0 ? 1 : 0);
        }

        /// <summary>Rethrows an exception caught in a callback with its own stack trace.</summary>
        internal static void Rethrow(Exception e)
        {
            if (e != null) ExceptionDispatchInfo.Capture(e).Throw();
        }

        internal static T Read<T>(IntPtr p) where T : struct => (T)Marshal.PtrToStructure(p, typeof(T));
    }

    /// <summary>An open shmkit handle; closed by Dispose (or the finalizer) once no
    /// view, reservation or lock holds a reference on it.</summary>
    public sealed class ShmkitHandle : SafeHandle
    {
        readonly Func<IntPtr, shmkit_status> close;
        internal ShmkitHandle(IntPtr h, Func<IntPtr, shmkit_status> close) : base(IntPtr.Zero, true)
        {
            this.close = close;
            SetHandle(h);
        }
        /// <summary>True for the null handle.</summary>
        public override bool IsInvalid => handle == IntPtr.Zero;
        /// <summary>Calls the C ABI's close function, which wakes calls blocked on the handle.</summary>
        protected override bool ReleaseHandle() => close(handle) == shmkit_status.SHMKIT_OK;
    }

    /// <summary>Base of every shmkit object: owns one handle.</summary>
    /// <remarks>Dispose may be called from any thread, also while another thread is
    /// blocked in a call on the object (Receive, Lock, Wait...): that call then throws
    /// <see cref="ObjectDisposedException"/>. This is how a reader thread is stopped.
    /// If a <see cref="SharedMemoryView"/>, <see cref="Reservation"/> or
    /// <see cref="MutexLock"/> of the object is still open, the native handle is closed
    /// when the last of them is disposed; the object refuses new calls at once.</remarks>
    public abstract class ShmkitObject : IDisposable
    {
        internal readonly ShmkitHandle Handle;
        int disposed;
        /// <summary>Made by the first async wait on the object.</summary>
        Readiness ready;
        internal ShmkitObject(IntPtr h, Func<IntPtr, shmkit_status> close) { Handle = new ShmkitHandle(h, close); }

        /// <summary>Registers the C ABI's one-shot ready callback with context ctx
        /// (shmkit_*_on_ready), for the objects that can be awaited.</summary>
        internal virtual shmkit_status RegisterReady(IntPtr ctx) =>
            throw new NotSupportedException(GetType().Name + " cannot be awaited");

        /// <summary>Runs attempt (a "try once" C call, timeout 0) until it gives something
        /// other than WouldBlock, awaiting the handle's ready callback in between. Nothing is
        /// taken by a wait cancelled through ct: only an attempt takes, and none runs after
        /// the cancellation is seen.</summary>
        internal async Task<shmkit_status> UntilReady(Func<shmkit_status> attempt, CancellationToken ct)
        {
            var r = LazyInitializer.EnsureInitialized(ref ready, () => new Readiness(RegisterReady));
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                if (IsDisposed) throw Disposed();
                // Registered before the attempt: the attempt's WouldBlock arms the handle,
                // and a wake-up from then on completes this signal.
                var signal = r.Arm(this);
                var s = attempt();
                if (s != shmkit_status.SHMKIT_ERR_WOULD_BLOCK) return s;
                await Readiness.Wait(signal, ct).ConfigureAwait(false);
            }
        }

        /// <summary>Dispose was called (the native handle may still be open for a view,
        /// reservation or lock). SafeHandle.IsClosed cannot tell: it turns true only when
        /// the last reference is released.</summary>
        internal bool IsDisposed => Volatile.Read(ref disposed) != 0;

        internal ObjectDisposedException Disposed(string message = null) =>
            new ObjectDisposedException(GetType().Name, message ?? "the " + GetType().Name + " was disposed");

        /// <summary>The raw handle for a call; throws ObjectDisposedException once disposed.
        /// Takes no reference: a Dispose during the call closes the native handle, which
        /// wakes the call (the C ABI keeps the object alive until it returns).</summary>
        internal IntPtr Raw
        {
            get
            {
                if (IsDisposed) throw Disposed();
                return Handle.DangerousGetHandle();
            }
        }

        /// <summary>Throws for a failed call on this object: ObjectDisposedException if
        /// the handle was closed under it, else ShmkitException.</summary>
        internal void Check(shmkit_status s, ulong count = 0)
        {
            // Also keeps this object (and so its handle) reachable until the call has
            // returned: a finalizer must not close the handle under a running call.
            GC.KeepAlive(this);
            if (s == shmkit_status.SHMKIT_OK) return;
            var message = Interop.LastError();
            // CLOSED: Dispose from another thread woke the call. BAD_HANDLE after a
            // Dispose: the handle was closed between Raw and the call.
            if ((Status)s == Status.Closed || (s == shmkit_status.SHMKIT_ERR_BAD_HANDLE && IsDisposed))
                throw Disposed(message);
            throw new ShmkitException((Status)s, message, count);
        }

        /// <summary>Takes a reference on the native handle for an object that hands out
        /// memory or holds state behind it; the handle stays open until <see cref="Release"/>.</summary>
        internal ShmkitHandle AddRef()
        {
            if (IsDisposed) throw Disposed();
            bool added = false;
            try
            {
                Handle.DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
                throw Disposed();
            }
            if (IsDisposed)
            {
                // Disposed while we took it (the handle was kept open by another reference).
                Handle.DangerousRelease();
                throw Disposed();
            }
            return Handle;
        }

        /// <summary>Closes the handle (at once, or when the last view, reservation or lock
        /// of this object is disposed). Safe to call more than once, from any thread.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) == 0)
            {
                Handle.Dispose();
                // Closing the handle calls its ready callbacks; if a view, reservation or
                // lock keeps it open, the awaiting tasks are woken here (they then throw
                // ObjectDisposedException).
                Volatile.Read(ref ready)?.Wake();
            }
        }
    }

    /// <summary>Named shared memory: managed segments, or raw objects by OS name.</summary>
    /// <remarks>Copy bytes in and out with <see cref="Read"/> and <see cref="Write"/>, or
    /// work on them in place through a view:
    /// <code>
    /// using (var shm = SharedMemory.Open("state"))
    /// using (var view = shm.Acquire())
    /// {
    ///     Span&lt;byte&gt; bytes = view.Span;   // valid until view.Dispose()
    ///     bytes[0]++;
    /// }
    /// </code></remarks>
    public sealed unsafe class SharedMemory : ShmkitObject
    {
        SharedMemory(IntPtr h) : base(h, p => NativeMethods.shmkit_shm_close((shmkit_shm*)p)) { }

        /// <summary>Creates managed segment <paramref name="name"/> of <paramref name="size"/>
        /// bytes (persistent: it outlives its last user until removed).</summary>
        public static SharedMemory Create(string name, ulong size, bool persistent = false)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_shm_create(n, size, persistent ? NativeMethods.SHMKIT_PERSISTENT : 0, &h));
            return new SharedMemory((IntPtr)h);
        }

        /// <summary>Opens managed segment <paramref name="name"/>.</summary>
        public static SharedMemory Open(string name, bool readOnly = false)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_shm_open(n, readOnly ? NativeMethods.SHMKIT_ACCESS_READ_ONLY : 0, &h));
            return new SharedMemory((IntPtr)h);
        }

        /// <summary>Opens managed segment <paramref name="name"/> with <paramref name="access"/>
        /// (CopyOnWrite: writes stay in this process).</summary>
        public static SharedMemory Open(string name, SharedMemoryAccess access)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_shm_open(n, (uint)access, &h));
            return new SharedMemory((IntPtr)h);
        }

        /// <summary>Opens managed segment <paramref name="name"/>, or creates it with
        /// <paramref name="size"/> zeroed bytes and runs <paramref name="init"/> (may be null)
        /// on them before any other process can open it. Of several processes racing here
        /// exactly one runs init; the others wait for it. An exception thrown by init fails
        /// the creation (nothing is left under the name) and is rethrown here; processes
        /// waiting to open it get ShmkitException InitFailed.</summary>
        public static SharedMemory CreateOrOpen(string name, ulong size, bool persistent = false, SegmentInit init = null) =>
            CreateOrOpen(name, size, out _, persistent, init);

        /// <summary><see cref="CreateOrOpen(string, ulong, bool, SegmentInit)"/>, also telling
        /// whether this call created the segment.</summary>
        public static SharedMemory CreateOrOpen(string name, ulong size, out bool created, bool persistent = false, SegmentInit init = null)
        {
            shmkit_shm* h;
            bool made = false;
            Exception error = null;
            NativeMethods.shmkit_shm_create_or_open_init_delegate cb = null;
            if (init != null)
            {
                cb = (data, len, user) =>
                {
                    try
                    {
                        if (len > int.MaxValue)
                            throw new InvalidOperationException($"the segment has {len} bytes, more than a span can hold: create it without init and fill it through Acquire().Slice");
                        init(new Span<byte>(data, (int)len));
                        return 0;
                    }
                    catch (Exception e)
                    {
                        error = e;
                        return 1;
                    }
                };
            }
            shmkit_status s;
            fixed (byte* n = Interop.Utf8(name))
                s = NativeMethods.shmkit_shm_create_or_open(n, size, persistent ? NativeMethods.SHMKIT_PERSISTENT : 0, cb, null, &h, &made);
            GC.KeepAlive(cb);
            Interop.Rethrow(error);
            Interop.Check(s);
            created = made;
            return new SharedMemory((IntPtr)h);
        }

        /// <summary>Reads segment <paramref name="name"/>'s header without opening it.</summary>
        public static SegmentInfo Inspect(string name)
        {
            shmkit_segment_info info;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_shm_inspect(n, &info));
            return new SegmentInfo(info);
        }

        /// <summary>A raw object with no shmkit header ("/name" on POSIX).</summary>
        public static SharedMemory CreateRaw(string osName, ulong size)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(osName))
                Interop.Check(NativeMethods.shmkit_shm_create_raw(n, size, &h));
            return new SharedMemory((IntPtr)h);
        }

        /// <summary>Opens another program's object by its OS name.</summary>
        public static SharedMemory OpenRaw(string osName, bool readOnly = false)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(osName))
                Interop.Check(NativeMethods.shmkit_shm_open_raw(n, readOnly ? NativeMethods.SHMKIT_ACCESS_READ_ONLY : 0, &h));
            return new SharedMemory((IntPtr)h);
        }

        /// <summary>Removes managed segment <paramref name="name"/>.</summary>
        public static void Remove(string name)
        {
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_shm_remove(n));
        }

        /// <summary>Removes a raw object by its OS name.</summary>
        public static void RemoveRaw(string osName)
        {
            fixed (byte* n = Interop.Utf8(osName)) Interop.Check(NativeMethods.shmkit_shm_remove_raw(n));
        }

        /// <summary>A view of the segment's bytes in place. The memory stays mapped until the
        /// view is disposed, even if this SharedMemory is disposed or collected first; dispose
        /// the view (<c>using</c>) when done, or the mapping stays until the process exits.</summary>
        /// <exception cref="ObjectDisposedException">This SharedMemory was disposed.</exception>
        public SharedMemoryView Acquire()
        {
            var handle = AddRef();
            try
            {
                byte* data;
                ulong size;
                bool writable;
                Check(NativeMethods.shmkit_shm_data((shmkit_shm*)handle.DangerousGetHandle(), &data, &size, &writable));
                var view = new SharedMemoryView(handle, data, size, writable);
                handle = null;
                return view;
            }
            finally
            {
                if (handle != null) handle.DangerousRelease();
            }
        }

        /// <summary>Bytes a <see cref="NamedMutex"/>, <see cref="NamedSemaphore"/> or
        /// <see cref="NamedEvent"/> takes inside a segment (InitIn/OpenIn; offsets are
        /// multiples of 8).</summary>
        public const ulong SyncObjectSize = NativeMethods.SHMKIT_SYNC_SIZE_IN_SEGMENT;

        /// <summary>Runs a C call that takes this segment's handle, holding a reference on it
        /// meanwhile (a Dispose on another thread cannot close it under the call).</summary>
        internal void With(Func<IntPtr, shmkit_status> call)
        {
            var handle = AddRef();
            shmkit_status s;
            try
            {
                s = call(handle.DangerousGetHandle());
            }
            finally
            {
                handle.DangerousRelease();
            }
            Interop.Check(s);
        }

        /// <summary>Copies bytes at <paramref name="offset"/> into <paramref name="into"/>.</summary>
        public void Read(ulong offset, Span<byte> into)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(into))
                Check(NativeMethods.shmkit_shm_read((shmkit_shm*)Raw, offset, p, (UIntPtr)into.Length));
        }

        /// <summary>Copies <paramref name="data"/> to <paramref name="offset"/>.</summary>
        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(data))
                Check(NativeMethods.shmkit_shm_write((shmkit_shm*)Raw, offset, p, (UIntPtr)data.Length));
        }
    }

    /// <summary>How to map a segment (the C ABI's SHMKIT_ACCESS_*).</summary>
    public enum SharedMemoryAccess : uint
    {
        /// <summary>Read and write.</summary>
        ReadWrite = 0,
        /// <summary>Read only: Write throws ShmkitException PermissionDenied.</summary>
        ReadOnly = 1,
        /// <summary>A private copy-on-write mapping: writes stay in this process.</summary>
        CopyOnWrite = 2,
    }

    /// <summary>Fills a new segment (<see cref="SharedMemory.CreateOrOpen(string, ulong, bool, SegmentInit)"/>)
    /// before any other process can open it; valid only during the call.</summary>
    public delegate void SegmentInit(Span<byte> data);

    /// <summary>What a segment's header says (<see cref="SharedMemory.Inspect"/>).</summary>
    public sealed class SegmentInfo
    {
        internal SegmentInfo(shmkit_segment_info i)
        {
            Size = i.size;
            TotalSize = i.total_size;
            Created = DateTimeOffset.FromUnixTimeMilliseconds((long)i.created_unix_ms);
            LayoutVersion = i.layout_version;
            CreatorPid = i.creator_pid;
            State = (SegmentState)i.state;
            CreatorAlive = i.creator_alive != 0;
            Persistent = i.persistent != 0;
            Stale = i.stale != 0;
        }
        /// <summary>Bytes available to the user.</summary>
        public ulong Size { get; }
        /// <summary>Bytes of the whole object, header included.</summary>
        public ulong TotalSize { get; }
        /// <summary>When it was created.</summary>
        public DateTimeOffset Created { get; }
        /// <summary>Layout version of the header.</summary>
        public uint LayoutVersion { get; }
        /// <summary>Process id of the creator.</summary>
        public uint CreatorPid { get; }
        /// <summary>Initialising, ready, or its initialisation failed.</summary>
        public SegmentState State { get; }
        /// <summary>The creator process still runs.</summary>
        public bool CreatorAlive { get; }
        /// <summary>It stays until removed.</summary>
        public bool Persistent { get; }
        /// <summary>Every user has left a temporary segment (the next open removes it).</summary>
        public bool Stale { get; }
    }

    /// <summary>A segment's initialisation state.</summary>
    public enum SegmentState : uint
    {
        /// <summary>Its creator is still filling it.</summary>
        Initialising = 0,
        /// <summary>Ready to use.</summary>
        Ready = 1,
        /// <summary>Its creator's initialisation failed.</summary>
        InitFailed = 2,
    }

    /// <summary>About the native library.</summary>
    public static unsafe class Library
    {
        /// <summary>The version of libshmkit_ffi, "major.minor.patch".</summary>
        public static string Version => Interop.String(NativeMethods.shmkit_version());

        /// <summary>The C ABI's name of a status ("SHMKIT_ERR_TIMEOUT").</summary>
        public static string StatusName(Status status) => Interop.String(NativeMethods.shmkit_status_name((int)status));
    }

    /// <summary>A segment's bytes in place, from <see cref="SharedMemory.Acquire"/>. While the
    /// view is open the memory stays mapped (it holds a reference on the segment's handle);
    /// spans taken from it are valid until <see cref="Dispose"/>, never after.</summary>
    /// <remarks>Not thread-safe to dispose while another thread uses its spans. A view that
    /// is never disposed keeps the segment mapped until the process exits (it has no
    /// finalizer, on purpose: a finalizer could run while a span taken from it is in use).</remarks>
    public sealed unsafe class SharedMemoryView : IDisposable
    {
        ShmkitHandle handle;
        readonly byte* data;
        readonly ulong size;

        internal SharedMemoryView(ShmkitHandle h, byte* data, ulong size, bool writable)
        {
            handle = h;
            this.data = data;
            this.size = size;
            Writable = writable;
        }

        /// <summary>The segment's size in bytes.</summary>
        public ulong Length => size;

        /// <summary>False for a segment opened read-only: then only <see cref="ReadOnlySpan"/> works.</summary>
        public bool Writable { get; }

        void Live()
        {
            if (Volatile.Read(ref handle) == null)
                throw new ObjectDisposedException(nameof(SharedMemoryView), "the view was disposed: its spans are no longer valid");
        }

        int Whole()
        {
            if (size > int.MaxValue)
                throw new InvalidOperationException($"the segment has {size} bytes, more than a span can hold: use Slice(offset, length)");
            return (int)size;
        }

        byte* At(ulong offset, int length)
        {
            Live();
            if (length < 0 || offset > size || (ulong)length > size - offset)
                throw new ArgumentOutOfRangeException(nameof(offset), $"{length} bytes at offset {offset} are outside the segment's {size} bytes");
            return data + offset;
        }

        Span<byte> Writeable(byte* p, int length)
        {
            if (!Writable)
                throw new InvalidOperationException("the segment was opened read-only: use ReadOnlySpan (writing would fault)");
            return new Span<byte>(p, length);
        }

        /// <summary>All the bytes, writable. Valid until the view is disposed.</summary>
        /// <exception cref="ObjectDisposedException">The view was disposed.</exception>
        /// <exception cref="InvalidOperationException">The segment is read-only, or larger than 2 GiB.</exception>
        public Span<byte> Span { get { Live(); return Writeable(data, Whole()); } }

        /// <summary>All the bytes, read-only. Valid until the view is disposed.</summary>
        public ReadOnlySpan<byte> ReadOnlySpan { get { Live(); return new ReadOnlySpan<byte>(data, Whole()); } }

        /// <summary><paramref name="length"/> writable bytes at <paramref name="offset"/>.</summary>
        public Span<byte> Slice(ulong offset, int length) => Writeable(At(offset, length), length);

        /// <summary><paramref name="length"/> read-only bytes at <paramref name="offset"/>.</summary>
        public ReadOnlySpan<byte> ReadOnlySlice(ulong offset, int length) => new ReadOnlySpan<byte>(At(offset, length), length);

        /// <summary>Ends the view: releases its reference on the segment's handle (which
        /// closes the handle if its SharedMemory was disposed). Spans taken from it must
        /// not be used afterwards.</summary>
        public void Dispose()
        {
            var h = Interlocked.Exchange(ref handle, null);
            if (h != null) h.DangerousRelease();
        }
    }

    /// <summary>Holds a NamedMutex until disposed. OwnerDied: the last holder died holding it.</summary>
    /// <remarks>The lock keeps the mutex's handle open: disposing the NamedMutex while a
    /// lock is held does not unlock it (the data it guards may be half-updated); the
    /// mutex is unlocked, and its handle closed, when the lock is disposed.</remarks>
    public sealed unsafe class MutexLock : IDisposable
    {
        ShmkitHandle handle;
        readonly NamedMutex owner;
        /// <summary>The previous holder died holding the mutex: check the data it guards,
        /// then <see cref="MarkConsistent"/>.</summary>
        public bool OwnerDied { get; private set; }
        internal MutexLock(ShmkitHandle h, bool died, NamedMutex owner)
        {
            handle = h;
            OwnerDied = died;
            this.owner = owner;
            Interlocked.Increment(ref owner.Held);
        }

        ShmkitHandle Held()
        {
            var h = Volatile.Read(ref handle);
            if (h == null) throw new ObjectDisposedException(nameof(MutexLock), "the lock was released");
            return h;
        }

        /// <summary>Declares the guarded data repaired after OwnerDied.</summary>
        public void MarkConsistent()
        {
            var h = Held();
            Interop.Check(NativeMethods.shmkit_mutex_mark_consistent((shmkit_mutex*)h.DangerousGetHandle()));
            OwnerDied = false;
        }

        /// <summary>Unlocks (once; later calls do nothing), also after the NamedMutex was disposed.</summary>
        public void Dispose()
        {
            var h = Interlocked.Exchange(ref handle, null);
            if (h == null) return;
            try
            {
                Interop.Check(NativeMethods.shmkit_mutex_unlock((shmkit_mutex*)h.DangerousGetHandle()));
            }
            finally
            {
                Interlocked.Decrement(ref owner.Held);
                h.DangerousRelease();
            }
        }
    }

    /// <summary>A named cross-process mutex that reports a holder that died.</summary>
    /// <remarks>Not recursive: locking it again through the same NamedMutex while holding
    /// it throws ShmkitException <see cref="Status.Busy"/> at once (it would wait for
    /// itself). Other NamedMutex objects of the same name, in this process or another,
    /// wait as usual.</remarks>
    public sealed unsafe partial class NamedMutex : ShmkitObject
    {
        NamedMutex(IntPtr h) : base(h, p => NativeMethods.shmkit_mutex_close((shmkit_mutex*)p)) { }

        /// <summary>MutexLocks of this NamedMutex not yet disposed (LockAsync refuses to wait for itself).</summary>
        internal int Held;

        /// <summary>Creates mutex <paramref name="name"/>; ShmkitException AlreadyExists if the name is taken.</summary>
        public static NamedMutex Create(string name)
        {
            shmkit_mutex* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_mutex_create(n, &h));
            return new NamedMutex((IntPtr)h);
        }

        /// <summary>Opens mutex <paramref name="name"/>, creating it if there is none.</summary>
        public static NamedMutex CreateOrOpen(string name)
        {
            shmkit_mutex* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_mutex_create_or_open(n, &h));
            return new NamedMutex((IntPtr)h);
        }

        /// <summary>Opens mutex <paramref name="name"/>, creating it if needed, persistent: it
        /// stays with its state after its last user closes it (until
        /// <c>SharedMemory.Remove(name)</c>), so a process that starts after an owner died
        /// holding it still gets OwnerDied from its first lock.</summary>
        public static NamedMutex CreateOrOpenPersistent(string name)
        {
            shmkit_mutex* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_mutex_create_or_open_persistent(n, &h));
            return new NamedMutex((IntPtr)h);
        }

        /// <summary>Opens existing mutex <paramref name="name"/>.</summary>
        public static NamedMutex Open(string name)
        {
            shmkit_mutex* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_mutex_open(n, &h));
            return new NamedMutex((IntPtr)h);
        }

        /// <summary>Initialises a new, unlocked mutex at <paramref name="offset"/> (a multiple
        /// of 8) of <paramref name="shm"/>, taking <see cref="SharedMemory.SyncObjectSize"/>
        /// bytes, and opens it. Do this once, when the segment is made, before other processes
        /// <see cref="OpenIn"/> it: initialising over a mutex in use breaks it.</summary>
        /// <remarks>A mutex in a segment lives as long as the segment: in a persistent segment
        /// a holder's death is reported (<see cref="MutexLock.OwnerDied"/>) even to a process
        /// that opens it after every other user has gone, which a named mutex (temporary: it
        /// goes with its last user, and its owner's death with it) cannot do. The NamedMutex
        /// keeps the segment mapped while it is open, even if <paramref name="shm"/> is
        /// disposed first.</remarks>
        public static NamedMutex InitIn(SharedMemory shm, ulong offset)
        {
            shmkit_mutex* h = null;
            Segment(shm).With(p => { shmkit_mutex* m; var s = NativeMethods.shmkit_mutex_init_in((shmkit_shm*)p, offset, &m); h = m; return s; });
            return new NamedMutex((IntPtr)h);
        }

        /// <summary>Opens the mutex at <paramref name="offset"/> of <paramref name="shm"/> (made
        /// there by <see cref="InitIn"/>, in this or another process). ShmkitException Corrupt if
        /// no shmkit object was initialised there, Mismatch if another kind was.</summary>
        public static NamedMutex OpenIn(SharedMemory shm, ulong offset)
        {
            shmkit_mutex* h = null;
            Segment(shm).With(p => { shmkit_mutex* m; var s = NativeMethods.shmkit_mutex_open_in((shmkit_shm*)p, offset, &m); h = m; return s; });
            return new NamedMutex((IntPtr)h);
        }

        internal static SharedMemory Segment(SharedMemory shm) => shm ?? throw new ArgumentNullException(nameof(shm));

        /// <summary>Locks, waiting up to timeout (null: forever); ShmkitException Timeout after
        /// (TimeSpan.Zero: WouldBlock at once if it is held). Busy: this NamedMutex already
        /// holds it. ObjectDisposedException if the mutex is disposed (from another thread)
        /// meanwhile.</summary>
        public MutexLock Lock(TimeSpan? timeout = null)
        {
            // No reference is held while waiting, so Dispose can wake the wait.
            var s = NativeMethods.shmkit_mutex_lock((shmkit_mutex*)Raw, Interop.Ms(timeout));
            return Locked(s);
        }

        /// <summary>Locks if the mutex is free now; null if another holder has it. Busy: this
        /// NamedMutex already holds it.</summary>
        public MutexLock TryLock()
        {
            var s = NativeMethods.shmkit_mutex_try_lock((shmkit_mutex*)Raw);
            if (s == shmkit_status.SHMKIT_ERR_WOULD_BLOCK)
            {
                GC.KeepAlive(this);
                return null;
            }
            return Locked(s);
        }

        MutexLock Locked(shmkit_status s)
        {
            bool died = s == shmkit_status.SHMKIT_ERR_OWNER_DIED;
            if (!died) Check(s);
            // Disposed between the lock and here: closing the handle unlocked it.
            return new MutexLock(AddRef(), died, this);
        }
    }

    /// <summary>A named counting semaphore (named so to stay clear of
    /// System.Threading.Semaphore).</summary>
    public sealed unsafe partial class NamedSemaphore : ShmkitObject
    {
        NamedSemaphore(IntPtr h) : base(h, p => NativeMethods.shmkit_semaphore_close((shmkit_semaphore*)p)) { }

        /// <summary>The largest maximum count.</summary>
        public const uint MaxCount = int.MaxValue;

        /// <summary>Creates semaphore <paramref name="name"/> with count <paramref name="initial"/>
        /// and maximum <paramref name="max"/>; ShmkitException AlreadyExists if the name is taken.</summary>
        public static NamedSemaphore Create(string name, uint initial, uint max = MaxCount)
        {
            shmkit_semaphore* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_semaphore_create(n, initial, max, &h));
            return new NamedSemaphore((IntPtr)h);
        }

        /// <summary>Opens semaphore <paramref name="name"/>, creating it with count <paramref name="initial"/> and maximum <paramref name="max"/> if there is none.</summary>
        public static NamedSemaphore CreateOrOpen(string name, uint initial, uint max = MaxCount)
        {
            shmkit_semaphore* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_semaphore_create_or_open(n, initial, max, &h));
            return new NamedSemaphore((IntPtr)h);
        }

        /// <summary>Opens existing semaphore <paramref name="name"/>; ShmkitException NotFound if there is none.</summary>
        public static NamedSemaphore Open(string name)
        {
            shmkit_semaphore* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_semaphore_open(n, &h));
            return new NamedSemaphore((IntPtr)h);
        }

        /// <summary>Initialises a new semaphore with count <paramref name="initial"/> and maximum
        /// <paramref name="max"/> at <paramref name="offset"/> (a multiple of 8) of
        /// <paramref name="shm"/>, taking <see cref="SharedMemory.SyncObjectSize"/> bytes, and
        /// opens it. Do this once, before other processes <see cref="OpenIn"/> it. Its count
        /// lives as long as the segment; it keeps the segment mapped while open.</summary>
        public static NamedSemaphore InitIn(SharedMemory shm, ulong offset, uint initial, uint max = MaxCount)
        {
            shmkit_semaphore* h = null;
            NamedMutex.Segment(shm).With(p => { shmkit_semaphore* m; var s = NativeMethods.shmkit_semaphore_init_in((shmkit_shm*)p, offset, initial, max, &m); h = m; return s; });
            return new NamedSemaphore((IntPtr)h);
        }

        /// <summary>Opens the semaphore at <paramref name="offset"/> of <paramref name="shm"/> (see <see cref="InitIn"/>).</summary>
        public static NamedSemaphore OpenIn(SharedMemory shm, ulong offset)
        {
            shmkit_semaphore* h = null;
            NamedMutex.Segment(shm).With(p => { shmkit_semaphore* m; var s = NativeMethods.shmkit_semaphore_open_in((shmkit_shm*)p, offset, &m); h = m; return s; });
            return new NamedSemaphore((IntPtr)h);
        }

        /// <summary>Takes one unit, waiting up to timeout (null: forever; TimeSpan.Zero: not at
        /// all); false if none was free in time.</summary>
        public bool Wait(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_semaphore_wait((shmkit_semaphore*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT || s == shmkit_status.SHMKIT_ERR_WOULD_BLOCK)
            {
                GC.KeepAlive(this);
                return false;
            }
            Check(s);
            return true;
        }

        /// <summary>Adds n units; returns the count before. ShmkitException AboveMaximum (and
        /// no change) past the maximum.</summary>
        public uint Release(uint n = 1)
        {
            uint before;
            Check(NativeMethods.shmkit_semaphore_release((shmkit_semaphore*)Raw, n, &before));
            return before;
        }

        /// <summary>The current count (another process may change it at once).</summary>
        public uint Count
        {
            get
            {
                uint count;
                Check(NativeMethods.shmkit_semaphore_count((shmkit_semaphore*)Raw, &count));
                return count;
            }
        }
    }

    /// <summary>A named event: manual-reset (stays set until Reset) or auto-reset (each Set
    /// lets one Wait through).</summary>
    public sealed unsafe partial class NamedEvent : ShmkitObject
    {
        NamedEvent(IntPtr h) : base(h, p => NativeMethods.shmkit_event_close((shmkit_event*)p)) { }

        static uint Flags(bool autoReset, bool initiallySet) =>
            (autoReset ? NativeMethods.SHMKIT_EVENT_AUTO_RESET : 0) | (initiallySet ? NativeMethods.SHMKIT_EVENT_INITIALLY_SET : 0);

        /// <summary>Creates event <paramref name="name"/>; ShmkitException AlreadyExists if the name is taken.</summary>
        public static NamedEvent Create(string name, bool autoReset = false, bool initiallySet = false)
        {
            shmkit_event* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_event_create(n, Flags(autoReset, initiallySet), &h));
            return new NamedEvent((IntPtr)h);
        }

        /// <summary>Opens event <paramref name="name"/>, creating it (unset unless
        /// <paramref name="initiallySet"/>) if there is none; autoReset: each Set lets one Wait through.</summary>
        public static NamedEvent CreateOrOpen(string name, bool autoReset = false, bool initiallySet = false)
        {
            shmkit_event* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_event_create_or_open(n, Flags(autoReset, initiallySet), &h));
            return new NamedEvent((IntPtr)h);
        }

        /// <summary>Opens existing event <paramref name="name"/>; ShmkitException NotFound if there is none.</summary>
        public static NamedEvent Open(string name)
        {
            shmkit_event* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_event_open(n, &h));
            return new NamedEvent((IntPtr)h);
        }

        /// <summary>Initialises a new event at <paramref name="offset"/> (a multiple of 8) of
        /// <paramref name="shm"/>, taking <see cref="SharedMemory.SyncObjectSize"/> bytes, and
        /// opens it. Do this once, before other processes <see cref="OpenIn"/> it. It keeps
        /// the segment mapped while open.</summary>
        public static NamedEvent InitIn(SharedMemory shm, ulong offset, bool autoReset = false, bool initiallySet = false)
        {
            shmkit_event* h = null;
            NamedMutex.Segment(shm).With(p => { shmkit_event* m; var s = NativeMethods.shmkit_event_init_in((shmkit_shm*)p, offset, Flags(autoReset, initiallySet), &m); h = m; return s; });
            return new NamedEvent((IntPtr)h);
        }

        /// <summary>Opens the event at <paramref name="offset"/> of <paramref name="shm"/> (see <see cref="InitIn"/>).</summary>
        public static NamedEvent OpenIn(SharedMemory shm, ulong offset)
        {
            shmkit_event* h = null;
            NamedMutex.Segment(shm).With(p => { shmkit_event* m; var s = NativeMethods.shmkit_event_open_in((shmkit_shm*)p, offset, &m); h = m; return s; });
            return new NamedEvent((IntPtr)h);
        }

        /// <summary>Sets the event, waking its waiters.</summary>
        public void Set() => Check(NativeMethods.shmkit_event_set((shmkit_event*)Raw));
        /// <summary>Unsets the event.</summary>
        public void Reset() => Check(NativeMethods.shmkit_event_reset((shmkit_event*)Raw));

        /// <summary>Whether the event is set now (another process may change it at once).</summary>
        public bool IsSet
        {
            get
            {
                bool set;
                Check(NativeMethods.shmkit_event_is_set((shmkit_event*)Raw, &set));
                return set;
            }
        }

        /// <summary>Waits until the event is set, up to timeout (null: forever; TimeSpan.Zero:
        /// not at all); false if it was not set in time. ObjectDisposedException if the event
        /// is disposed (from another thread) meanwhile.</summary>
        public bool Wait(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_event_wait((shmkit_event*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT || s == shmkit_status.SHMKIT_ERR_WOULD_BLOCK)
            {
                GC.KeepAlive(this);
                return false;
            }
            Check(s);
            return true;
        }
    }

    /// <summary>Channel flags (the C ABI's SHMKIT_CHANNEL_* bits).</summary>
    [Flags]
    public enum ChannelFlags : uint
    {
        /// <summary>No flag: a temporary channel, created if needed, this end sleeps when it waits.</summary>
        None = 0,
        /// <summary>The channel stays until removed (default: it goes with its last user).</summary>
        Persistent = 1,
        /// <summary>This end spins instead of sleeping when it waits (lower latency, a busy core).</summary>
        BusyPoll = 2,
        /// <summary>Broadcast: keep messages for subscribers that join later.</summary>
        History = 4,
        /// <summary>Fail with AlreadyExists unless this call creates the channel.</summary>
        CreateNew = 8,
        /// <summary>Fail with NotFound unless the channel exists (not with CreateNew).</summary>
        OpenExisting = 16,
    }

    /// <summary>Options for creating or opening a channel (0: default, or the existing channel's).</summary>
    /// <remarks>A queue admits <b>one sender</b> unless <see cref="MaxSenders"/> says more (a
    /// second <c>Sender.Connect</c> gets ShmkitException Occupied); a broadcast channel
    /// admits the default number of subscribers unless <see cref="MaxSubscribers"/> says
    /// otherwise. Both are the C ABI's <c>max_peers</c> (Rust's <c>max_senders</c> /
    /// <c>max_subscribers</c>); setting the one that does not fit the endpoint is an
    /// ArgumentException.</remarks>
    public struct ChannelOptions
    {
        /// <summary>Ring bytes, a power of two from 256 to 1 GiB (default 1 MiB).</summary>
        public ulong Capacity;
        /// <summary>Longest message a queue accepts (default 1 GiB).</summary>
        public ulong MaxMessage;
        /// <summary>Queue: how many senders may be attached at once (default 1).</summary>
        public uint MaxSenders;
        /// <summary>Broadcast: how many subscribers may be attached at once.</summary>
        public uint MaxSubscribers;
        /// <summary>What to do (create or open, persistence, history...).</summary>
        public ChannelFlags Flags;

        internal shmkit_channel_options Native(bool queue)
        {
            if (queue && MaxSubscribers != 0)
                throw new ArgumentException("MaxSubscribers is for broadcast channels (Publisher, Subscriber): a queue's option is MaxSenders", "options");
            if (!queue && MaxSenders != 0)
                throw new ArgumentException("MaxSenders is for queues (Sender, Receiver): a broadcast channel's option is MaxSubscribers", "options");
            return new shmkit_channel_options
            {
                capacity = Capacity, max_message = MaxMessage, max_peers = queue ? MaxSenders : MaxSubscribers, flags = (uint)Flags,
            };
        }
    }

    /// <summary>Lends a received message, valid only during the call.</summary>
    public delegate void MessageHandler(ReadOnlySpan<byte> message);

    internal static unsafe class Callbacks
    {
        /// <summary>Runs handler over each lent message; an exception is kept and rethrown after the call.</summary>
        internal sealed class Lend
        {
            readonly MessageHandler handler;
            internal Exception Error;
            internal Lend(MessageHandler h) { handler = h; }
            internal int Call(byte* data, UIntPtr len, void* user)
            {
                try { handler(new ReadOnlySpan<byte>(data, checked((int)len))); return 0; }
                catch (Exception e) { Error = e; return 1; }
            }
        }
    }

    /// <summary>The sending end of a queue channel.</summary>
    public sealed unsafe partial class Sender : ShmkitObject
    {
        Sender(IntPtr h) : base(h, p => NativeMethods.shmkit_sender_close((shmkit_sender*)p)) { }

        /// <summary>Attaches to queue channel <paramref name="name"/> as a sender, creating it if needed.</summary>
        public static Sender Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_sender* h;
            var o = options.Native(true);
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_sender_connect(n, &o, &h));
            return new Sender((IntPtr)h);
        }

        /// <summary>Sends a message of any length, waiting up to timeout (null: forever) for room.</summary>
        public void Send(ReadOnlySpan<byte> message, TimeSpan? timeout = null)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(message))
                Check(NativeMethods.shmkit_sender_send((shmkit_sender*)Raw, p, (UIntPtr)message.Length, Interop.Ms(timeout)));
        }

        /// <summary>Zero-copy: reserves <paramref name="len"/> bytes in the ring, waiting up
        /// to timeout (null: forever) for room; fill <see cref="Reservation.Span"/>, then
        /// <see cref="Reservation.Commit"/>. Until the reservation ends the sender refuses
        /// other sends, and stays open even if disposed (so the span stays valid):
        /// <code>
        /// using (var r = tx.Reserve(5))
        /// {
        ///     Encoding.ASCII.GetBytes("hello").CopyTo(r.Span);
        ///     r.Commit();
        /// }   // not committed (an exception): cancelled here
        /// </code></summary>
        public Reservation Reserve(int len, TimeSpan? timeout = null)
        {
            if (len < 0) throw new ArgumentOutOfRangeException(nameof(len), "a reservation's length cannot be negative");
            byte* data;
            // No reference is held while waiting for room, so Dispose can wake the wait.
            Check(NativeMethods.shmkit_sender_reserve((shmkit_sender*)Raw, (UIntPtr)len, Interop.Ms(timeout), &data));
            // Disposed between the reserve and here: closing the handle cancelled it.
            return new Reservation(this, AddRef(), data, len);
        }
    }

    /// <summary>Bytes reserved in a channel's ring by <see cref="Sender.Reserve"/>:
    /// <see cref="Commit"/> sends them, <see cref="Cancel"/> or Dispose without Commit
    /// drops them. Dispose it (<c>using</c>): it keeps its sender's handle open, and so
    /// the ring mapped, until it ends.</summary>
    /// <remarks>Has no finalizer, on purpose: a finalizer could cancel the reservation
    /// while a span taken from it is still written, and a later message would be
    /// overwritten. A reservation never disposed keeps its sender attached until the
    /// process exits.</remarks>
    public sealed unsafe class Reservation : IDisposable
    {
        readonly Sender sender;
        readonly byte* data;
        readonly int length;
        ShmkitHandle handle;
        string ended;

        internal Reservation(Sender s, ShmkitHandle h, byte* d, int len)
        {
            sender = s;
            handle = h;
            data = d;
            length = len;
        }

        /// <summary>Throws unless the reservation is open and its sender not disposed.</summary>
        void Live()
        {
            if (Volatile.Read(ref handle) == null)
            {
                if (ended == "disposed")
                    throw new ObjectDisposedException(nameof(Reservation), "the reservation was disposed (cancelled): its span is no longer valid");
                throw new InvalidOperationException("the reservation was already " + (ended ?? "ended") + ": its span is no longer valid");
            }
            if (sender.IsDisposed)
                throw sender.Disposed("the Sender of this reservation was disposed: the reservation can only be disposed (cancelled)");
        }

        /// <summary>Where to write the message: valid until Commit, Cancel or Dispose.</summary>
        /// <exception cref="ObjectDisposedException">The reservation or its Sender was disposed.</exception>
        /// <exception cref="InvalidOperationException">It was committed or cancelled.</exception>
        public Span<byte> Span
        {
            get
            {
                Live();
                return new Span<byte>(data, length);
            }
        }

        /// <summary>The reserved length in bytes.</summary>
        public int Length => length;

        /// <summary>Ends the reservation once; false if it had already ended.</summary>
        bool End(string how, bool commit)
        {
            var h = Interlocked.Exchange(ref handle, null);
            if (h == null) return false;
            ended = how;
            try
            {
                var raw = (shmkit_sender*)h.DangerousGetHandle();
                var s = commit ? NativeMethods.shmkit_sender_commit(raw) : NativeMethods.shmkit_sender_cancel(raw);
                if (commit) sender.Check(s);
            }
            finally
            {
                h.DangerousRelease();
            }
            return true;
        }

        /// <summary>Sends the written bytes as one message.</summary>
        /// <exception cref="ObjectDisposedException">The reservation or its Sender was disposed.</exception>
        /// <exception cref="InvalidOperationException">It was already committed or cancelled.</exception>
        public void Commit()
        {
            Live();
            if (!End("committed", true)) Live();
        }

        /// <summary>Drops the reservation: nothing is sent.</summary>
        public void Cancel()
        {
            Live();
            if (!End("cancelled", false)) Live();
        }

        /// <summary>Cancels the reservation unless it was committed; releases its hold on the
        /// sender (closing the sender's handle if the Sender was disposed).</summary>
        public void Dispose() => End("disposed", false);
    }

    /// <summary>The receiving end of a queue channel.</summary>
    public sealed unsafe partial class Receiver : ShmkitObject
    {
        Receiver(IntPtr h) : base(h, p => NativeMethods.shmkit_receiver_close((shmkit_receiver*)p)) { }

        /// <summary>Attaches to queue channel <paramref name="name"/> as its receiver, creating it if needed.</summary>
        public static Receiver Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_receiver* h;
            var o = options.Native(true);
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_receiver_connect(n, &o, &h));
            return new Receiver((IntPtr)h);
        }

        /// <summary>Receives into buffer; returns the length. A longer message stays queued:
        /// ShmkitException BufferTooSmall with Count = its length.</summary>
        public int Receive(Span<byte> buffer, TimeSpan? timeout = null)
        {
            UIntPtr len = UIntPtr.Zero;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(buffer))
                s = NativeMethods.shmkit_receiver_recv((shmkit_receiver*)Raw, p, (UIntPtr)buffer.Length, &len, Interop.Ms(timeout));
            Check(s, (ulong)len);
            return (int)len;
        }

        /// <summary>Receives the next message into a new array.</summary>
        public byte[] Receive(TimeSpan? timeout = null)
        {
            byte[] result = null;
            ReceiveWith(m => result = m.ToArray(), timeout);
            return result;
        }

        /// <summary>Lends the next message to handler without copying it.</summary>
        public void ReceiveWith(MessageHandler handler, TimeSpan? timeout = null)
        {
            var lend = new Callbacks.Lend(handler);
            NativeMethods.shmkit_receiver_recv_with_callback_delegate cb = lend.Call;
            var s = NativeMethods.shmkit_receiver_recv_with((shmkit_receiver*)Raw, cb, null, Interop.Ms(timeout));
            GC.KeepAlive(cb);
            Interop.Rethrow(lend.Error);
            Check(s);
        }
    }

    /// <summary>The publisher of a broadcast channel.</summary>
    public sealed unsafe class Publisher : ShmkitObject
    {
        Publisher(IntPtr h) : base(h, p => NativeMethods.shmkit_publisher_close((shmkit_publisher*)p)) { }

        /// <summary>Attaches to broadcast channel <paramref name="name"/> as its publisher, creating it if needed.</summary>
        public static Publisher Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_publisher* h;
            var o = options.Native(false);
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_publisher_connect(n, &o, &h));
            return new Publisher((IntPtr)h);
        }

        /// <summary>Publishes a message to every subscriber; never waits (a slow subscriber lags). TooLong above a quarter of the ring.</summary>
        public void Publish(ReadOnlySpan<byte> message)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(message))
                Check(NativeMethods.shmkit_publisher_publish((shmkit_publisher*)Raw, p, (UIntPtr)message.Length));
        }
    }

    /// <summary>A subscriber; Receive throws ShmkitException Lagged (Count = missed) when it fell behind.</summary>
    public sealed unsafe partial class Subscriber : ShmkitObject
    {
        Subscriber(IntPtr h) : base(h, p => NativeMethods.shmkit_subscriber_close((shmkit_subscriber*)p)) { }

        /// <summary>Subscribes to broadcast channel <paramref name="name"/>, creating it if needed.</summary>
        public static Subscriber Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_subscriber* h;
            var o = options.Native(false);
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_subscriber_connect(n, &o, &h));
            return new Subscriber((IntPtr)h);
        }

        /// <summary>Receives the next message into buffer, waiting up to timeout (null: forever); returns its length.
        /// ObjectDisposedException if the subscriber is disposed (from another thread) meanwhile.</summary>
        public int Receive(Span<byte> buffer, TimeSpan? timeout = null)
        {
            UIntPtr len = UIntPtr.Zero;
            ulong missed = 0;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(buffer))
                s = NativeMethods.shmkit_subscriber_recv((shmkit_subscriber*)Raw, p, (UIntPtr)buffer.Length, &len, Interop.Ms(timeout), &missed);
            Check(s, s == shmkit_status.SHMKIT_ERR_LAGGED ? missed : (ulong)len);
            return (int)len;
        }

        /// <summary>Receives the next message into a new array (Lagged as for <see cref="Receive(Span{byte}, TimeSpan?)"/>).</summary>
        public byte[] Receive(TimeSpan? timeout = null)
        {
            byte[] result = null;
            ReceiveWith(m => result = m.ToArray(), timeout);
            return result;
        }

        /// <summary>Lends the next message to handler without copying it (valid only during
        /// the call). ShmkitException Lagged (Count = missed) when this subscriber fell behind;
        /// the next call lends the oldest message still held. An exception thrown by handler
        /// is rethrown (the message is consumed).</summary>
        public void ReceiveWith(MessageHandler handler, TimeSpan? timeout = null)
        {
            var lend = new Callbacks.Lend(handler);
            NativeMethods.shmkit_subscriber_recv_with_callback_delegate cb = lend.Call;
            ulong missed = 0;
            var s = NativeMethods.shmkit_subscriber_recv_with((shmkit_subscriber*)Raw, cb, null, Interop.Ms(timeout), &missed);
            GC.KeepAlive(cb);
            Interop.Rethrow(lend.Error);
            Check(s, missed);
        }
    }

    /// <summary>A request/response client.</summary>
    public sealed unsafe partial class RpcClient : ShmkitObject
    {
        RpcClient(IntPtr h) : base(h, p => NativeMethods.shmkit_rpc_client_close((shmkit_rpc_client*)p)) { }

        /// <summary>Connects to RPC server <paramref name="name"/>.</summary>
        public static RpcClient Connect(string name)
        {
            shmkit_rpc_client* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_rpc_client_connect(n, &h));
            return new RpcClient((IntPtr)h);
        }

        /// <summary>Sends request and waits up to timeout (null: forever) for the reply.
        /// ObjectDisposedException if the client is disposed (from another thread) meanwhile.</summary>
        public byte[] Call(ReadOnlySpan<byte> request, TimeSpan? timeout = null)
        {
            byte[] reply = null;
            var lend = new Callbacks.Lend(m => reply = m.ToArray());
            NativeMethods.shmkit_rpc_client_call_with_callback_delegate cb = lend.Call;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(request))
                s = NativeMethods.shmkit_rpc_client_call_with((shmkit_rpc_client*)Raw, p, (UIntPtr)request.Length, cb, null, Interop.Ms(timeout));
            GC.KeepAlive(cb);
            Interop.Rethrow(lend.Error);
            Check(s);
            return reply;
        }

        /// <summary>Sends request and receives the reply into <paramref name="reply"/>; returns its
        /// length. A longer reply: ShmkitException BufferTooSmall (Count = its length), then
        /// <see cref="LastReply"/> copies it.</summary>
        public int Call(ReadOnlySpan<byte> request, Span<byte> reply, TimeSpan? timeout = null)
        {
            UIntPtr len = UIntPtr.Zero;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(request))
            fixed (byte* r = &MemoryMarshal.GetReference(reply))
                s = NativeMethods.shmkit_rpc_client_call((shmkit_rpc_client*)Raw, p, (UIntPtr)request.Length, r, (UIntPtr)reply.Length, &len, Interop.Ms(timeout));
            Check(s, (ulong)len);
            return (int)len;
        }

        /// <summary>Copies the reply that did not fit the last <see cref="Call(ReadOnlySpan{byte}, Span{byte}, TimeSpan?)"/>'s buffer; returns its length.</summary>
        public int LastReply(Span<byte> into)
        {
            UIntPtr len = UIntPtr.Zero;
            shmkit_status s;
            fixed (byte* r = &MemoryMarshal.GetReference(into))
                s = NativeMethods.shmkit_rpc_client_last_reply((shmkit_rpc_client*)Raw, r, (UIntPtr)into.Length, &len);
            Check(s, (ulong)len);
            return (int)len;
        }

        /// <summary>Sends request and lends the reply to handler without copying it (valid
        /// only during the call); an exception thrown by handler is rethrown.</summary>
        public void CallWith(ReadOnlySpan<byte> request, MessageHandler handler, TimeSpan? timeout = null)
        {
            var lend = new Callbacks.Lend(handler);
            NativeMethods.shmkit_rpc_client_call_with_callback_delegate cb = lend.Call;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(request))
                s = NativeMethods.shmkit_rpc_client_call_with((shmkit_rpc_client*)Raw, p, (UIntPtr)request.Length, cb, null, Interop.Ms(timeout));
            GC.KeepAlive(cb);
            Interop.Rethrow(lend.Error);
            Check(s);
        }
    }

    /// <summary>A request/response server.</summary>
    public sealed unsafe partial class RpcServer : ShmkitObject
    {
        RpcServer(IntPtr h) : base(h, p => NativeMethods.shmkit_rpc_server_close((shmkit_rpc_server*)p)) { }

        /// <summary>Binds RPC server <paramref name="name"/> (one server per name).</summary>
        public static RpcServer Bind(string name)
        {
            shmkit_rpc_server* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_rpc_server_bind(n, &h));
            return new RpcServer((IntPtr)h);
        }

        /// <summary>Receives the next request into buffer, waiting up to timeout (null: forever);
        /// returns its length. A longer request stays queued: ShmkitException BufferTooSmall
        /// (Count = its length). Answer it with <see cref="Reply"/>.</summary>
        public int Receive(Span<byte> buffer, TimeSpan? timeout = null)
        {
            UIntPtr len = UIntPtr.Zero;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(buffer))
                s = NativeMethods.shmkit_rpc_server_recv((shmkit_rpc_server*)Raw, p, (UIntPtr)buffer.Length, &len, Interop.Ms(timeout));
            Check(s, (ulong)len);
            return (int)len;
        }

        /// <summary>Answers the request last received.</summary>
        public void Reply(ReadOnlySpan<byte> answer)
        {
            fixed (byte* a = &MemoryMarshal.GetReference(answer))
                Check(NativeMethods.shmkit_rpc_server_reply((shmkit_rpc_server*)Raw, a, (UIntPtr)answer.Length));
        }

        /// <summary>Receives one request and replies with handler's answer.</summary>
        public void ServeOne(Func<byte[], byte[]> handler, TimeSpan? timeout = null)
        {
            var buf = new byte[4096];
            UIntPtr len = UIntPtr.Zero;
            shmkit_status s;
            fixed (byte* p = buf)
                s = NativeMethods.shmkit_rpc_server_recv((shmkit_rpc_server*)Raw, p, (UIntPtr)buf.Length, &len, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_BUFFER_TOO_SMALL)
            {
                buf = new byte[(int)len];
                fixed (byte* p = buf)
                    s = NativeMethods.shmkit_rpc_server_recv((shmkit_rpc_server*)Raw, p, (UIntPtr)buf.Length, &len, Interop.Ms(timeout));
            }
            Check(s);
            var request = new byte[(int)len];
            Array.Copy(buf, request, request.Length);
            var answer = handler(request);
            fixed (byte* a = answer)
                Check(NativeMethods.shmkit_rpc_server_reply((shmkit_rpc_server*)Raw, a, (UIntPtr)answer.Length));
        }
    }

    /// <summary>Waits on many objects at once (a select/epoll for shmkit), without a thread
    /// per object: receivers, senders, subscribers, RPC servers, mutexes, semaphores, events,
    /// and descriptors of your own. <see cref="Wait"/> returns the indices of the ready
    /// members; take from them with their TimeSpan.Zero calls (another process may take
    /// first: then they say WouldBlock, and you wait again).</summary>
    /// <remarks>Level-triggered: a member is reported by every wait until it is taken from.
    /// During a wait every member is in a call (as if this thread were blocked on it): use
    /// the members from the thread that waits. Disposing a member from another thread ends
    /// the wait and reports it ready (its next call throws ObjectDisposedException: Remove
    /// it); disposing the set from another thread ends the wait in ObjectDisposedException.
    /// The set keeps its members alive; disposing it does not dispose them.</remarks>
    public sealed unsafe class WaitSet : ShmkitObject
    {
        readonly System.Collections.Generic.List<ShmkitObject> members = new System.Collections.Generic.List<ShmkitObject>();

        /// <summary>An empty set.</summary>
        public WaitSet() : base(New(), p => NativeMethods.shmkit_waitset_close((shmkit_waitset*)p)) { }

        static IntPtr New()
        {
            shmkit_waitset* h;
            Interop.Check(NativeMethods.shmkit_waitset_new(&h));
            return (IntPtr)h;
        }

        int Added(ShmkitObject member, Func<IntPtr, UIntPtr> add)
        {
            var index = (int)add(Raw);
            lock (members) members.Add(member);
            GC.KeepAlive(member);
            return index;
        }

        UIntPtr Index(shmkit_status s, UIntPtr index)
        {
            Check(s);
            return index;
        }

        /// <summary>Adds a receiver (ready: a message, or the senders gone); returns its index
        /// (members are numbered from 0 in the order added).</summary>
        public int Add(Receiver member) => Added(member, set =>
        {
            UIntPtr i;
            return Index(NativeMethods.shmkit_waitset_add_receiver((shmkit_waitset*)set, (shmkit_receiver*)member.Raw, &i), i);
        });

        /// <summary>Adds a sender (ready: room in the ring, or the receiver gone).</summary>
        public int Add(Sender member) => Added(member, set =>
        {
            UIntPtr i;
            return Index(NativeMethods.shmkit_waitset_add_sender((shmkit_waitset*)set, (shmkit_sender*)member.Raw, &i), i);
        });

        /// <summary>Adds a subscriber (ready: a message published, a lag, or the publisher gone).</summary>
        public int Add(Subscriber member) => Added(member, set =>
        {
            UIntPtr i;
            return Index(NativeMethods.shmkit_waitset_add_subscriber((shmkit_waitset*)set, (shmkit_subscriber*)member.Raw, &i), i);
        });

        /// <summary>Adds an RPC server (ready: a request came).</summary>
        public int Add(RpcServer member) => Added(member, set =>
        {
            UIntPtr i;
            return Index(NativeMethods.shmkit_waitset_add_rpc_server((shmkit_waitset*)set, (shmkit_rpc_server*)member.Raw, &i), i);
        });

        /// <summary>Adds a mutex (ready: free, or its owner died; TryLock takes it).</summary>
        public int Add(NamedMutex member) => Added(member, set =>
        {
            UIntPtr i;
            return Index(NativeMethods.shmkit_waitset_add_mutex((shmkit_waitset*)set, (shmkit_mutex*)member.Raw, &i), i);
        });

        /// <summary>Adds a semaphore (ready: a unit free; Wait(TimeSpan.Zero) takes it).</summary>
        public int Add(NamedSemaphore member) => Added(member, set =>
        {
            UIntPtr i;
            return Index(NativeMethods.shmkit_waitset_add_semaphore((shmkit_waitset*)set, (shmkit_semaphore*)member.Raw, &i), i);
        });

        /// <summary>Adds an event (ready: set; the wait takes no auto-reset signal).</summary>
        public int Add(NamedEvent member) => Added(member, set =>
        {
            UIntPtr i;
            return Index(NativeMethods.shmkit_waitset_add_event((shmkit_waitset*)set, (shmkit_event*)member.Raw, &i), i);
        });

        /// <summary>Adds a descriptor of your own: on Unix a file descriptor (ready when
        /// readable), on Windows a HANDLE (ready when signalled). Keep it open while it is in
        /// the set.</summary>
        public int AddDescriptor(IntPtr descriptor)
        {
            UIntPtr i;
            Check(NativeMethods.shmkit_waitset_add_descriptor((shmkit_waitset*)Raw, descriptor, &i));
            return (int)i;
        }

        /// <summary>Takes the member at index out of the set (the other indices stay).</summary>
        public void Remove(int index)
        {
            if (index < 0) throw new ArgumentOutOfRangeException(nameof(index), index, "an index cannot be negative");
            Check(NativeMethods.shmkit_waitset_remove((shmkit_waitset*)Raw, (UIntPtr)index));
        }

        /// <summary>Waits up to timeout (null: forever; TimeSpan.Zero: looks once) until at least
        /// one member is ready; returns the ready members' indices, in order (empty if none
        /// became ready in time).</summary>
        public int[] Wait(TimeSpan? timeout = null)
        {
            int n;
            lock (members) n = members.Count;
            var ready = new UIntPtr[Math.Max(n + 64, 1)];
            UIntPtr count = UIntPtr.Zero;
            shmkit_status s;
            fixed (UIntPtr* r = ready)
                s = NativeMethods.shmkit_waitset_wait((shmkit_waitset*)Raw, Interop.Ms(timeout), (UIntPtr*)r, (UIntPtr)ready.Length, &count);
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT || s == shmkit_status.SHMKIT_ERR_WOULD_BLOCK)
            {
                GC.KeepAlive(this);
                return new int[0];
            }
            Check(s);
            var result = new int[Math.Min((int)count, ready.Length)];
            for (int k = 0; k < result.Length; k++) result[k] = (int)ready[k];
            return result;
        }
    }

    /// <summary>A POSIX named semaphore (<c>sem_open</c>) by its exact OS name ("/name"),
    /// to work with a program that uses one (Unix only: ShmkitException Unsupported
    /// elsewhere). Its waits are not ended by Dispose from another thread: give them a timeout.</summary>
    public sealed unsafe class PosixSemaphore : ShmkitObject
    {
        PosixSemaphore(IntPtr h) : base(h, p => NativeMethods.shmkit_posix_semaphore_close((shmkit_posix_semaphore*)p)) { }

        /// <summary>Creates POSIX semaphore <paramref name="osName"/> with value
        /// <paramref name="initial"/>, or opens it if it exists (<paramref name="exclusive"/>:
        /// ShmkitException AlreadyExists instead).</summary>
        public static PosixSemaphore Create(string osName, uint initial, bool exclusive = false)
        {
            shmkit_posix_semaphore* h;
            fixed (byte* n = Interop.Utf8(osName, nameof(osName)))
                Interop.Check(NativeMethods.shmkit_posix_semaphore_create(n, initial, exclusive, &h));
            return new PosixSemaphore((IntPtr)h);
        }

        /// <summary>Opens existing POSIX semaphore <paramref name="osName"/>.</summary>
        public static PosixSemaphore Open(string osName)
        {
            shmkit_posix_semaphore* h;
            fixed (byte* n = Interop.Utf8(osName, nameof(osName)))
                Interop.Check(NativeMethods.shmkit_posix_semaphore_open(n, &h));
            return new PosixSemaphore((IntPtr)h);
        }

        /// <summary>Removes the name (<c>sem_unlink</c>); handles already open keep working.</summary>
        public static void Remove(string osName)
        {
            fixed (byte* n = Interop.Utf8(osName, nameof(osName)))
                Interop.Check(NativeMethods.shmkit_posix_semaphore_remove(n));
        }

        /// <summary><c>sem_wait</c> up to timeout (null: forever; TimeSpan.Zero: not at all);
        /// false if no unit came in time.</summary>
        public bool Wait(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_posix_semaphore_wait((shmkit_posix_semaphore*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT || s == shmkit_status.SHMKIT_ERR_WOULD_BLOCK)
            {
                GC.KeepAlive(this);
                return false;
            }
            Check(s);
            return true;
        }

        /// <summary><c>sem_post</c>: adds one unit.</summary>
        public void Post() => Check(NativeMethods.shmkit_posix_semaphore_post((shmkit_posix_semaphore*)Raw));
    }

    /// <summary>A Win32 named semaphore (<c>CreateSemaphore</c>) by its exact name, to work
    /// with a program that uses one (Windows only: ShmkitException Unsupported elsewhere).
    /// Its waits are not ended by Dispose from another thread: give them a timeout.</summary>
    public sealed unsafe class Win32Semaphore : ShmkitObject
    {
        Win32Semaphore(IntPtr h) : base(h, p => NativeMethods.shmkit_native_semaphore_close((shmkit_native_semaphore*)p)) { }

        /// <summary>Creates Win32 semaphore <paramref name="osName"/>, or opens it if it exists
        /// (<paramref name="exclusive"/>: ShmkitException AlreadyExists instead).</summary>
        public static Win32Semaphore Create(string osName, uint initial, uint max, bool exclusive = false)
        {
            shmkit_native_semaphore* h;
            fixed (byte* n = Interop.Utf8(osName, nameof(osName)))
                Interop.Check(NativeMethods.shmkit_native_semaphore_create(n, initial, max, exclusive, &h));
            return new Win32Semaphore((IntPtr)h);
        }

        /// <summary>Opens existing Win32 semaphore <paramref name="osName"/>.</summary>
        public static Win32Semaphore Open(string osName)
        {
            shmkit_native_semaphore* h;
            fixed (byte* n = Interop.Utf8(osName, nameof(osName)))
                Interop.Check(NativeMethods.shmkit_native_semaphore_open(n, &h));
            return new Win32Semaphore((IntPtr)h);
        }

        /// <summary>Takes one unit, up to timeout (null: forever); false if none came in time.</summary>
        public bool Wait(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_native_semaphore_wait((shmkit_native_semaphore*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT || s == shmkit_status.SHMKIT_ERR_WOULD_BLOCK)
            {
                GC.KeepAlive(this);
                return false;
            }
            Check(s);
            return true;
        }

        /// <summary>Adds n units; returns the count before.</summary>
        public uint Release(uint n = 1)
        {
            uint before;
            Check(NativeMethods.shmkit_native_semaphore_release((shmkit_native_semaphore*)Raw, n, &before));
            return before;
        }
    }

    /// <summary>A Win32 named mutex (<c>CreateMutex</c>) by its exact name (Windows only:
    /// ShmkitException Unsupported elsewhere). A Win32 mutex belongs to the thread that
    /// locked it: dispose its <see cref="Win32MutexLock"/> on that thread.</summary>
    public sealed unsafe class Win32Mutex : ShmkitObject
    {
        Win32Mutex(IntPtr h) : base(h, p => NativeMethods.shmkit_native_mutex_close((shmkit_native_mutex*)p)) { }

        /// <summary>Creates Win32 mutex <paramref name="osName"/>, or opens it if it exists
        /// (<paramref name="exclusive"/>: ShmkitException AlreadyExists instead).</summary>
        public static Win32Mutex Create(string osName, bool exclusive = false)
        {
            shmkit_native_mutex* h;
            fixed (byte* n = Interop.Utf8(osName, nameof(osName)))
                Interop.Check(NativeMethods.shmkit_native_mutex_create(n, exclusive, &h));
            return new Win32Mutex((IntPtr)h);
        }

        /// <summary>Locks, waiting up to timeout (null: forever); ShmkitException Timeout after.
        /// <see cref="Win32MutexLock.Abandoned"/>: a thread ended holding it.</summary>
        public Win32MutexLock Lock(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_native_mutex_lock((shmkit_native_mutex*)Raw, Interop.Ms(timeout));
            bool abandoned = s == shmkit_status.SHMKIT_ERR_OWNER_DIED;
            if (!abandoned) Check(s);
            return new Win32MutexLock(AddRef(), abandoned);
        }
    }

    /// <summary>Holds a <see cref="Win32Mutex"/> until disposed (on the thread that locked it).</summary>
    public sealed unsafe class Win32MutexLock : IDisposable
    {
        ShmkitHandle handle;
        internal Win32MutexLock(ShmkitHandle h, bool abandoned) { handle = h; Abandoned = abandoned; }
        /// <summary>The previous holder ended holding it (WAIT_ABANDONED): check the data it guards.</summary>
        public bool Abandoned { get; }
        /// <summary>Unlocks (once), also after the Win32Mutex was disposed.</summary>
        public void Dispose()
        {
            var h = Interlocked.Exchange(ref handle, null);
            if (h == null) return;
            try
            {
                Interop.Check(NativeMethods.shmkit_native_mutex_unlock((shmkit_native_mutex*)h.DangerousGetHandle()));
            }
            finally
            {
                h.DangerousRelease();
            }
        }
    }

    /// <summary>A Win32 named event (<c>CreateEvent</c>) by its exact name (Windows only:
    /// ShmkitException Unsupported elsewhere).</summary>
    public sealed unsafe class Win32Event : ShmkitObject
    {
        Win32Event(IntPtr h) : base(h, p => NativeMethods.shmkit_native_event_close((shmkit_native_event*)p)) { }

        /// <summary>Creates Win32 event <paramref name="osName"/>, or opens it if it exists
        /// (<paramref name="exclusive"/>: ShmkitException AlreadyExists instead).</summary>
        public static Win32Event Create(string osName, bool autoReset = false, bool initiallySet = false, bool exclusive = false)
        {
            shmkit_native_event* h;
            uint flags = (autoReset ? NativeMethods.SHMKIT_EVENT_AUTO_RESET : 0) | (initiallySet ? NativeMethods.SHMKIT_EVENT_INITIALLY_SET : 0);
            fixed (byte* n = Interop.Utf8(osName, nameof(osName)))
                Interop.Check(NativeMethods.shmkit_native_event_create(n, flags, exclusive, &h));
            return new Win32Event((IntPtr)h);
        }

        /// <summary>Sets the event.</summary>
        public void Set() => Check(NativeMethods.shmkit_native_event_set((shmkit_native_event*)Raw));

        /// <summary>Waits for the event up to timeout (null: forever); false if it was not set in time.</summary>
        public bool Wait(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_native_event_wait((shmkit_native_event*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT || s == shmkit_status.SHMKIT_ERR_WOULD_BLOCK)
            {
                GC.KeepAlive(this);
                return false;
            }
            Check(s);
            return true;
        }
    }

    // ---- Awaiting: pollable handles and async waits (issue 24) ----

    /// <summary>A descriptor an event loop can wait on, from an object's <c>Pollable()</c>:
    /// on Unix a file descriptor (readable when the object may be ready), on Windows an
    /// event HANDLE (signalled then; wrap it in a WaitHandle with
    /// <c>new SafeWaitHandle(d.Value, false)</c>). Closed by Dispose. The object's
    /// "try once" calls (TimeSpan.Zero, TryLock) arm it when they find nothing; once it
    /// is ready, repeat them until they find nothing. It stays valid, and ready, after
    /// the object is disposed.</summary>
    public sealed class PollableDescriptor : SafeHandle
    {
        internal PollableDescriptor(IntPtr d) : base(new IntPtr(-1), true) { SetHandle(d); }
        /// <summary>True when it holds no descriptor.</summary>
        public override bool IsInvalid => handle == new IntPtr(-1);
        /// <summary>The descriptor: a file descriptor on Unix, an event HANDLE on Windows.</summary>
        public IntPtr Value => handle;
        /// <summary>Closes it (shmkit_pollable_close).</summary>
        protected override bool ReleaseHandle() => NativeMethods.shmkit_pollable_close(handle) == shmkit_status.SHMKIT_OK;
    }

    /// <summary>A value set by an attempt, read after the await (no ref locals in lambdas).</summary>
    internal sealed class Box<T>
    {
        internal T Value;
    }

    /// <summary>What tasks awaiting one object wait on: the C ABI's one-shot ready callback,
    /// at most one registered at a time, completing a TaskCompletionSource.</summary>
    internal sealed class Readiness
    {
        readonly object gate = new object();
        readonly Func<IntPtr, shmkit_status> register;
        TaskCompletionSource<bool> signal = NewSignal();
        bool registered;

        internal Readiness(Func<IntPtr, shmkit_status> register) { this.register = register; }

        // Continuations run on the thread pool: the callback comes on shmkit's reactor
        // thread, which must never run user code.
        static TaskCompletionSource<bool> NewSignal() =>
            new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>A task completed by the object's next wake-up; registers the callback
        /// unless one is registered already (the first one makes the handle pollable).</summary>
        internal Task Arm(ShmkitObject owner)
        {
            Task t;
            bool register_now = false;
            lock (gate)
            {
                if (signal.Task.IsCompleted) signal = NewSignal();
                t = signal.Task;
                if (!registered) registered = register_now = true;
            }
            if (!register_now) return t;
            // Freed by the callback, which the C ABI calls exactly once (ready, or closed).
            var self = GCHandle.Alloc(this);
            shmkit_status s;
            try
            {
                s = register(GCHandle.ToIntPtr(self));
            }
            catch
            {
                self.Free();
                lock (gate) registered = false;
                throw;
            }
            if (s != shmkit_status.SHMKIT_OK)
            {
                self.Free();
                lock (gate) registered = false;
                owner.Check(s);
            }
            return t;
        }

        /// <summary>From the native callback: the registration is used up.</summary>
        internal void Fire()
        {
            TaskCompletionSource<bool> s;
            lock (gate)
            {
                registered = false;
                s = signal;
            }
            s.TrySetResult(true);
        }

        /// <summary>Wakes the tasks waiting now (Dispose), leaving the registration.</summary>
        internal void Wake()
        {
            TaskCompletionSource<bool> s;
            lock (gate) s = signal;
            s.TrySetResult(true);
        }

        /// <summary>Awaits signal or the cancellation, whichever comes first (the signal
        /// if both have).</summary>
        internal static async Task Wait(Task signal, CancellationToken ct)
        {
            if (!ct.CanBeCanceled)
            {
                await signal.ConfigureAwait(false);
                return;
            }
            var cancelled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            using (ct.Register(() => cancelled.TrySetResult(true)))
            {
                if (await Task.WhenAny(signal, cancelled.Task).ConfigureAwait(false) != signal)
                    ct.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>The native ready callbacks: one static delegate per C function (csbindgen
    /// makes a delegate type for each), kept alive for the process's lifetime.</summary>
    internal static unsafe class ReadyCallbacks
    {
        /// <summary>Whether this (shmkit's) thread was made a background thread.</summary>
        [ThreadStatic] static bool background;

        static void Fired(void* ctx)
        {
            try
            {
                // The runtime adopted shmkit's reactor thread for this call; as a
                // foreground thread it would keep the process from exiting.
                if (!background)
                {
                    Thread.CurrentThread.IsBackground = true;
                    background = true;
                }
                var h = GCHandle.FromIntPtr((IntPtr)ctx);
                var r = (Readiness)h.Target;
                h.Free();
                r.Fire();
            }
            catch
            {
                // On shmkit's thread nothing could catch it, and an exception must not
                // unwind into the C ABI.
            }
        }

        internal static readonly NativeMethods.shmkit_sender_on_ready_callback_delegate Sender = Fired;
        internal static readonly NativeMethods.shmkit_receiver_on_ready_callback_delegate Receiver = Fired;
        internal static readonly NativeMethods.shmkit_subscriber_on_ready_callback_delegate Subscriber = Fired;
        internal static readonly NativeMethods.shmkit_rpc_client_on_ready_callback_delegate RpcClient = Fired;
        internal static readonly NativeMethods.shmkit_rpc_server_on_ready_callback_delegate RpcServer = Fired;
        internal static readonly NativeMethods.shmkit_mutex_on_ready_callback_delegate Mutex = Fired;
        internal static readonly NativeMethods.shmkit_semaphore_on_ready_callback_delegate Semaphore = Fired;
        internal static readonly NativeMethods.shmkit_event_on_ready_callback_delegate Event = Fired;
    }

    // The pointer work of the async methods (unsafe parts: no await here).

    public sealed unsafe partial class Sender
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_sender_on_ready((shmkit_sender*)Raw, ReadyCallbacks.Sender, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// room may have come, armed by <c>Send(message, TimeSpan.Zero)</c> finding the ring full.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_sender_pollable((shmkit_sender*)Raw, &d));
            return new PollableDescriptor(d);
        }

        Func<shmkit_status> SendAttempt(ReadOnlyMemory<byte> message) => () =>
        {
            using (var pin = message.Pin())
                return NativeMethods.shmkit_sender_send((shmkit_sender*)Raw, (byte*)pin.Pointer, (UIntPtr)message.Length, 0);
        };
    }

    public sealed unsafe partial class Receiver
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_receiver_on_ready((shmkit_receiver*)Raw, ReadyCallbacks.Receiver, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// a message may have come, armed by a <c>Receive(..., TimeSpan.Zero)</c> that finds none.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_receiver_pollable((shmkit_receiver*)Raw, &d));
            return new PollableDescriptor(d);
        }

        Func<shmkit_status> ReceiveAttempt(Callbacks.Lend lend)
        {
            NativeMethods.shmkit_receiver_recv_with_callback_delegate cb = lend.Call;
            return () => NativeMethods.shmkit_receiver_recv_with((shmkit_receiver*)Raw, cb, null, 0);
        }
    }

    public sealed unsafe partial class Subscriber
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_subscriber_on_ready((shmkit_subscriber*)Raw, ReadyCallbacks.Subscriber, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// a message may have been published, armed by a <c>Receive(..., TimeSpan.Zero)</c> that finds none.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_subscriber_pollable((shmkit_subscriber*)Raw, &d));
            return new PollableDescriptor(d);
        }

        Func<shmkit_status> ReceiveAttempt(Callbacks.Lend lend, Box<ulong> missed)
        {
            NativeMethods.shmkit_subscriber_recv_with_callback_delegate cb = lend.Call;
            return () =>
            {
                ulong m = 0;
                var s = NativeMethods.shmkit_subscriber_recv_with((shmkit_subscriber*)Raw, cb, null, 0, &m);
                missed.Value = m;
                return s;
            };
        }
    }

    public sealed unsafe partial class RpcServer
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_rpc_server_on_ready((shmkit_rpc_server*)Raw, ReadyCallbacks.RpcServer, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// a request may have come, armed by a <c>Receive(..., TimeSpan.Zero)</c> that finds none.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_rpc_server_pollable((shmkit_rpc_server*)Raw, &d));
            return new PollableDescriptor(d);
        }

        /// <summary>One try into a buffer that grows to the request's size (a request too
        /// long for it stays the server's current one).</summary>
        Func<shmkit_status> ReceiveAttempt(Box<byte[]> request) => () =>
        {
            var buf = request.Value ?? new byte[4096];
            UIntPtr len = UIntPtr.Zero;
            shmkit_status s;
            fixed (byte* p = buf)
                s = NativeMethods.shmkit_rpc_server_recv((shmkit_rpc_server*)Raw, p, (UIntPtr)buf.Length, &len, 0);
            if (s == shmkit_status.SHMKIT_ERR_BUFFER_TOO_SMALL)
            {
                buf = new byte[(int)len];
                fixed (byte* p = buf)
                    s = NativeMethods.shmkit_rpc_server_recv((shmkit_rpc_server*)Raw, p, (UIntPtr)buf.Length, &len, 0);
            }
            if (s == shmkit_status.SHMKIT_OK) Array.Resize(ref buf, (int)len);
            request.Value = s == shmkit_status.SHMKIT_OK ? buf : null;
            return s;
        };
    }

    public sealed unsafe partial class RpcClient
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_rpc_client_on_ready((shmkit_rpc_client*)Raw, ReadyCallbacks.RpcClient, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// the reply to a started call may have come, armed by the C ABI's
        /// <c>shmkit_rpc_client_finish_call</c> with timeout 0.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_rpc_client_pollable((shmkit_rpc_client*)Raw, &d));
            return new PollableDescriptor(d);
        }

        Func<shmkit_status> StartAttempt(ReadOnlyMemory<byte> request) => () =>
        {
            using (var pin = request.Pin())
                return NativeMethods.shmkit_rpc_client_start_call((shmkit_rpc_client*)Raw, (byte*)pin.Pointer, (UIntPtr)request.Length, 0);
        };

        Func<shmkit_status> FinishAttempt(Box<byte[]> reply) => () =>
        {
            var buf = new byte[4096];
            UIntPtr len = UIntPtr.Zero;
            shmkit_status s;
            fixed (byte* p = buf)
                s = NativeMethods.shmkit_rpc_client_finish_call((shmkit_rpc_client*)Raw, p, (UIntPtr)buf.Length, &len, 0);
            if (s == shmkit_status.SHMKIT_ERR_BUFFER_TOO_SMALL)
            {
                buf = new byte[(int)len];
                fixed (byte* p = buf)
                    s = NativeMethods.shmkit_rpc_client_last_reply((shmkit_rpc_client*)Raw, p, (UIntPtr)buf.Length, &len);
            }
            if (s == shmkit_status.SHMKIT_OK)
            {
                Array.Resize(ref buf, (int)len);
                reply.Value = buf;
            }
            return s;
        };
    }

    public sealed unsafe partial class NamedMutex
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_mutex_on_ready((shmkit_mutex*)Raw, ReadyCallbacks.Mutex, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// the mutex may be free, armed by a <see cref="TryLock"/> that finds it held.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_mutex_pollable((shmkit_mutex*)Raw, &d));
            return new PollableDescriptor(d);
        }

        Func<shmkit_status> LockAttempt() => () => NativeMethods.shmkit_mutex_try_lock((shmkit_mutex*)Raw);
    }

    public sealed unsafe partial class NamedSemaphore
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_semaphore_on_ready((shmkit_semaphore*)Raw, ReadyCallbacks.Semaphore, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// a unit may have been released, armed by a <c>Wait(TimeSpan.Zero)</c> that finds none.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_semaphore_pollable((shmkit_semaphore*)Raw, &d));
            return new PollableDescriptor(d);
        }

        Func<shmkit_status> WaitAttempt() => () => NativeMethods.shmkit_semaphore_wait((shmkit_semaphore*)Raw, 0);
    }

    public sealed unsafe partial class NamedEvent
    {
        internal override shmkit_status RegisterReady(IntPtr ctx) =>
            NativeMethods.shmkit_event_on_ready((shmkit_event*)Raw, ReadyCallbacks.Event, (void*)ctx);

        /// <summary>A descriptor for an event loop (see <see cref="PollableDescriptor"/>): ready when
        /// the event may have been set, armed by a <c>Wait(TimeSpan.Zero)</c> that finds it unset.</summary>
        public PollableDescriptor Pollable()
        {
            IntPtr d;
            Check(NativeMethods.shmkit_event_pollable((shmkit_event*)Raw, &d));
            return new PollableDescriptor(d);
        }

        Func<shmkit_status> WaitAttempt() => () => NativeMethods.shmkit_event_wait((shmkit_event*)Raw, 0);
    }

    // The async methods (safe parts). Each awaits without a thread: the object's ready
    // callback wakes it. Cancelling through the CancellationToken takes nothing (the
    // message, request, reply, lock, unit or signal stays for the next call) and ends
    // in OperationCanceledException; Dispose from any thread ends it in
    // ObjectDisposedException.

    public sealed partial class Sender
    {
        /// <summary>Sends message once there is room, awaiting room without a thread. For
        /// messages up to a quarter of the ring (longer ones: ShmkitException TooLong; send
        /// them with <see cref="Send"/>). Disconnected if the receiver goes while it waits.
        /// Cancelled, nothing was sent.</summary>
        public async Task SendAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default(CancellationToken))
        {
            Check(await UntilReady(SendAttempt(message), cancellationToken).ConfigureAwait(false));
        }
    }

    public sealed partial class Receiver
    {
        /// <summary>The next message, awaited without a thread. ShmkitException Disconnected
        /// once the queue is empty and every sender is gone (or died). Cancelled, nothing was
        /// taken: the message stays for the next receive.</summary>
        public async Task<byte[]> ReceiveAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] result = null;
            var lend = new Callbacks.Lend(m => result = m.ToArray());
            var s = await UntilReady(ReceiveAttempt(lend), cancellationToken).ConfigureAwait(false);
            Interop.Rethrow(lend.Error);
            Check(s);
            return result;
        }
    }

    public sealed partial class Subscriber
    {
        /// <summary>The next message, awaited without a thread. ShmkitException Lagged (Count =
        /// messages missed) when this subscriber fell behind: await again for the oldest one
        /// still held. Cancelled, nothing was taken.</summary>
        public async Task<byte[]> ReceiveAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] result = null;
            var lend = new Callbacks.Lend(m => result = m.ToArray());
            var missed = new Box<ulong>();
            var s = await UntilReady(ReceiveAttempt(lend, missed), cancellationToken).ConfigureAwait(false);
            Interop.Rethrow(lend.Error);
            Check(s, missed.Value);
            return result;
        }
    }

    public sealed partial class RpcServer
    {
        /// <summary>The next request, awaited without a thread; answer it with
        /// <see cref="Reply"/>. Cancelled, nothing was taken.</summary>
        public async Task<byte[]> ReceiveAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var request = new Box<byte[]>();
            Check(await UntilReady(ReceiveAttempt(request), cancellationToken).ConfigureAwait(false));
            return request.Value;
        }
    }

    public sealed partial class RpcClient
    {
        /// <summary>Sends request and awaits the reply without a thread. ShmkitException
        /// Disconnected if the server stops or dies first. Cancelled before the request went
        /// out, nothing was sent; after, the server still answers and the next call discards
        /// that reply. (Room in the server's request queue, seldom lacking, is awaited in
        /// short naps: the C ABI has no wake-up for it.)</summary>
        public async Task<byte[]> CallAsync(ReadOnlyMemory<byte> request, CancellationToken cancellationToken = default(CancellationToken))
        {
            var start = StartAttempt(request);
            int nap = 1;
            shmkit_status s;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                s = start();
                if (s != shmkit_status.SHMKIT_ERR_WOULD_BLOCK) break;
                await Task.Delay(nap, cancellationToken).ConfigureAwait(false);
                nap = Math.Min(nap * 2, 50);
            }
            Check(s);
            var reply = new Box<byte[]>();
            Check(await UntilReady(FinishAttempt(reply), cancellationToken).ConfigureAwait(false));
            return reply.Value;
        }
    }

    public sealed partial class NamedMutex
    {
        /// <summary>Locks, awaiting the mutex without a thread; the lock may be disposed on any
        /// thread. <see cref="MutexLock.OwnerDied"/> as for <see cref="Lock"/>. ShmkitException
        /// Busy at once if this NamedMutex already holds it (it is not recursive). Cancelled,
        /// nothing was taken.</summary>
        public async Task<MutexLock> LockAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            if (Volatile.Read(ref Held) != 0)
                throw new ShmkitException(Status.Busy, "this NamedMutex already holds the lock (it is not recursive): dispose its MutexLock first");
            return Locked(await UntilReady(LockAttempt(), cancellationToken).ConfigureAwait(false));
        }
    }

    public sealed partial class NamedSemaphore
    {
        /// <summary>Takes one unit, awaiting it without a thread. Cancelled, no unit was taken.</summary>
        public async Task WaitAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            Check(await UntilReady(WaitAttempt(), cancellationToken).ConfigureAwait(false));
        }
    }

    public sealed partial class NamedEvent
    {
        /// <summary>Awaits the event set, without a thread (an auto-reset event's signal is taken
        /// by the await that completes). Cancelled, nothing was taken.</summary>
        public async Task WaitAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            Check(await UntilReady(WaitAttempt(), cancellationToken).ConfigureAwait(false));
        }
    }
}
