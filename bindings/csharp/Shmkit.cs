// Shmkit.cs: the safe C# layer over the shmkit C ABI (NativeMethods.g.cs, made
// by csbindgen). Handles are SafeHandles (IDisposable: `using`), bytes go in and
// out as Span<byte>/ReadOnlySpan<byte>, failures throw ShmkitException carrying
// the status and the message naming the object and the cause.
//
// Build (Mono): mcs -unsafe -target:library -out:Shmkit.dll NativeMethods.g.cs Shmkit.cs
// Run: the native library (libshmkit_ffi.so / shmkit_ffi.dll) must be on the
// loader's path (LD_LIBRARY_PATH on Linux, beside the .exe on Windows).
using System;
using System.Runtime.InteropServices;
using System.Text;
using Shmkit.Native;

namespace Shmkit
{
    /// <summary>What a call returned (the C ABI's shmkit_status).</summary>
    public enum Status
    {
        Ok = 0, InvalidArgument = 1, NullPointer = 2, BadHandle = 3, InvalidUtf8 = 4,
        NotFound = 5, AlreadyExists = 6, PermissionDenied = 7, OutOfSpace = 8, OutOfBounds = 9,
        Mismatch = 10, Corrupt = 11, Truncated = 12, InitFailed = 13, Timeout = 14,
        WouldBlock = 15, Disconnected = 16, Lagged = 17, OwnerDied = 18, Occupied = 19,
        TooLong = 20, BufferTooSmall = 21, AboveMaximum = 22, Unsupported = 23, Callback = 24,
        Internal = 25, Os = 26,
    }

    /// <summary>A failed call: the status and the message naming the object and cause.</summary>
    public class ShmkitException : Exception
    {
        public Status Status { get; }
        /// <summary>Lagged: messages missed. BufferTooSmall: bytes needed.</summary>
        public ulong Count { get; }
        public ShmkitException(Status status, string message, ulong count = 0) : base(message)
        {
            Status = status;
            Count = count;
        }
    }

    /// <summary>Conversions every class uses.</summary>
    internal static unsafe class Interop
    {
        internal static string LastError()
        {
            byte* p = NativeMethods.shmkit_last_error();
            int n = 0;
            while (p[n] != 0) n++;
            return Encoding.UTF8.GetString(p, n);
        }

        internal static Status Check(shmkit_status s, ulong count = 0)
        {
            if (s != shmkit_status.SHMKIT_OK) throw new ShmkitException((Status)s, LastError(), count);
            return Status.Ok;
        }

        internal static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s + "\0");

        internal static long Ms(TimeSpan? t) => t.HasValue ? (long)t.Value.TotalMilliseconds : -1;

        internal static T Read<T>(IntPtr p) where T : struct => (T)Marshal.PtrToStructure(p, typeof(T));
    }

    /// <summary>An open shmkit handle; closed by Dispose (or the finalizer).</summary>
    public sealed class ShmkitHandle : SafeHandle
    {
        readonly Func<IntPtr, shmkit_status> close;
        internal ShmkitHandle(IntPtr h, Func<IntPtr, shmkit_status> close) : base(IntPtr.Zero, true)
        {
            this.close = close;
            SetHandle(h);
        }
        public override bool IsInvalid => handle == IntPtr.Zero;
        protected override bool ReleaseHandle() => close(handle) == shmkit_status.SHMKIT_OK;
    }

    /// <summary>Base of every shmkit object: owns one handle.</summary>
    public abstract class ShmkitObject : IDisposable
    {
        internal readonly ShmkitHandle Handle;
        internal ShmkitObject(IntPtr h, Func<IntPtr, shmkit_status> close) { Handle = new ShmkitHandle(h, close); }
        /// <summary>The raw handle for a call; throws ObjectDisposedException once closed.</summary>
        internal IntPtr Raw
        {
            get
            {
                if (Handle.IsClosed) throw new ObjectDisposedException(GetType().Name);
                return Handle.DangerousGetHandle();
            }
        }
        public void Dispose() => Handle.Dispose();
    }

    /// <summary>Named shared memory: managed segments, or raw objects by OS name.</summary>
    public sealed unsafe class SharedMemory : ShmkitObject
    {
        SharedMemory(IntPtr h) : base(h, p => NativeMethods.shmkit_shm_close((shmkit_shm*)p)) { }

        public static SharedMemory Create(string name, ulong size, bool persistent = false)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_shm_create(n, size, persistent ? NativeMethods.SHMKIT_PERSISTENT : 0, &h));
            return new SharedMemory((IntPtr)h);
        }

        public static SharedMemory Open(string name, bool readOnly = false)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_shm_open(n, readOnly ? NativeMethods.SHMKIT_ACCESS_READ_ONLY : 0, &h));
            return new SharedMemory((IntPtr)h);
        }

        /// <summary>A raw object with no shmkit header ("/name" on POSIX).</summary>
        public static SharedMemory CreateRaw(string osName, ulong size)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(osName))
                Interop.Check(NativeMethods.shmkit_shm_create_raw(n, size, &h));
            return new SharedMemory((IntPtr)h);
        }

        public static SharedMemory OpenRaw(string osName, bool readOnly = false)
        {
            shmkit_shm* h;
            fixed (byte* n = Interop.Utf8(osName))
                Interop.Check(NativeMethods.shmkit_shm_open_raw(n, readOnly ? NativeMethods.SHMKIT_ACCESS_READ_ONLY : 0, &h));
            return new SharedMemory((IntPtr)h);
        }

        public static void Remove(string name)
        {
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_shm_remove(n));
        }

        public static void RemoveRaw(string osName)
        {
            fixed (byte* n = Interop.Utf8(osName)) Interop.Check(NativeMethods.shmkit_shm_remove_raw(n));
        }

        /// <summary>The segment's bytes, in place (valid until Dispose).</summary>
        public Span<byte> Span
        {
            get
            {
                byte* data;
                ulong size;
                bool writable;
                Interop.Check(NativeMethods.shmkit_shm_data((shmkit_shm*)Raw, &data, &size, &writable));
                return new Span<byte>(data, checked((int)size));
            }
        }

        public void Read(ulong offset, Span<byte> into)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(into))
                Interop.Check(NativeMethods.shmkit_shm_read((shmkit_shm*)Raw, offset, p, (UIntPtr)into.Length));
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(data))
                Interop.Check(NativeMethods.shmkit_shm_write((shmkit_shm*)Raw, offset, p, (UIntPtr)data.Length));
        }
    }

    /// <summary>Holds a NamedMutex until disposed. OwnerDied: the last holder died holding it.</summary>
    public sealed unsafe class MutexLock : IDisposable
    {
        readonly NamedMutex mutex;
        bool held = true;
        public bool OwnerDied { get; private set; }
        internal MutexLock(NamedMutex m, bool died) { mutex = m; OwnerDied = died; }
        public void MarkConsistent()
        {
            Interop.Check(NativeMethods.shmkit_mutex_mark_consistent((shmkit_mutex*)mutex.Raw));
            OwnerDied = false;
        }
        public void Dispose()
        {
            if (held) { held = false; Interop.Check(NativeMethods.shmkit_mutex_unlock((shmkit_mutex*)mutex.Raw)); }
        }
    }

    /// <summary>A named cross-process mutex that reports a holder that died.</summary>
    public sealed unsafe class NamedMutex : ShmkitObject
    {
        NamedMutex(IntPtr h) : base(h, p => NativeMethods.shmkit_mutex_close((shmkit_mutex*)p)) { }

        public static NamedMutex CreateOrOpen(string name)
        {
            shmkit_mutex* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_mutex_create_or_open(n, &h));
            return new NamedMutex((IntPtr)h);
        }

        public static NamedMutex Open(string name)
        {
            shmkit_mutex* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_mutex_open(n, &h));
            return new NamedMutex((IntPtr)h);
        }

        /// <summary>Locks, waiting up to timeout (null: forever); ShmkitException Timeout after.</summary>
        public MutexLock Lock(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_mutex_lock((shmkit_mutex*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_OWNER_DIED) return new MutexLock(this, true);
            Interop.Check(s);
            return new MutexLock(this, false);
        }
    }

    /// <summary>A named counting semaphore.</summary>
    public sealed unsafe class Semaphore : ShmkitObject
    {
        Semaphore(IntPtr h) : base(h, p => NativeMethods.shmkit_semaphore_close((shmkit_semaphore*)p)) { }

        public static Semaphore CreateOrOpen(string name, uint initial, uint max)
        {
            shmkit_semaphore* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_semaphore_create_or_open(n, initial, max, &h));
            return new Semaphore((IntPtr)h);
        }

        /// <summary>Takes one unit; false if the timeout passed first.</summary>
        public bool Wait(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_semaphore_wait((shmkit_semaphore*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT) return false;
            Interop.Check(s);
            return true;
        }

        /// <summary>Adds n units; returns the count before.</summary>
        public uint Release(uint n = 1)
        {
            uint before;
            Interop.Check(NativeMethods.shmkit_semaphore_release((shmkit_semaphore*)Raw, n, &before));
            return before;
        }
    }

    /// <summary>A named event.</summary>
    public sealed unsafe class NamedEvent : ShmkitObject
    {
        NamedEvent(IntPtr h) : base(h, p => NativeMethods.shmkit_event_close((shmkit_event*)p)) { }

        public static NamedEvent CreateOrOpen(string name, bool autoReset = false)
        {
            shmkit_event* h;
            fixed (byte* n = Interop.Utf8(name))
                Interop.Check(NativeMethods.shmkit_event_create_or_open(n, autoReset ? NativeMethods.SHMKIT_EVENT_AUTO_RESET : 0, &h));
            return new NamedEvent((IntPtr)h);
        }
        public void Set() => Interop.Check(NativeMethods.shmkit_event_set((shmkit_event*)Raw));
        public void Reset() => Interop.Check(NativeMethods.shmkit_event_reset((shmkit_event*)Raw));
        public bool Wait(TimeSpan? timeout = null)
        {
            var s = NativeMethods.shmkit_event_wait((shmkit_event*)Raw, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_TIMEOUT) return false;
            Interop.Check(s);
            return true;
        }
    }

    /// <summary>Options for creating or opening a channel (0: default, or the existing channel's).</summary>
    public struct ChannelOptions
    {
        public ulong Capacity;
        public ulong MaxMessage;
        public uint MaxPeers;
        public uint Flags;
        internal shmkit_channel_options Native => new shmkit_channel_options
        {
            capacity = Capacity, max_message = MaxMessage, max_peers = MaxPeers, flags = Flags,
        };
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
    public sealed unsafe class Sender : ShmkitObject
    {
        Sender(IntPtr h) : base(h, p => NativeMethods.shmkit_sender_close((shmkit_sender*)p)) { }

        public static Sender Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_sender* h;
            var o = options.Native;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_sender_connect(n, &o, &h));
            return new Sender((IntPtr)h);
        }

        /// <summary>Sends a message of any length, waiting up to timeout (null: forever) for room.</summary>
        public void Send(ReadOnlySpan<byte> message, TimeSpan? timeout = null)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(message))
                Interop.Check(NativeMethods.shmkit_sender_send((shmkit_sender*)Raw, p, (UIntPtr)message.Length, Interop.Ms(timeout)));
        }

        /// <summary>Zero-copy: reserves len bytes in the ring; fill Span, then Commit.</summary>
        public Reservation Reserve(int len, TimeSpan? timeout = null)
        {
            byte* data;
            Interop.Check(NativeMethods.shmkit_sender_reserve((shmkit_sender*)Raw, (UIntPtr)len, Interop.Ms(timeout), &data));
            return new Reservation(this, data, len);
        }
    }

    /// <summary>Bytes reserved in a channel's ring; Commit sends them, Dispose without Commit cancels.</summary>
    public sealed unsafe class Reservation : IDisposable
    {
        readonly Sender sender;
        readonly byte* data;
        readonly int length;
        bool open = true;
        internal Reservation(Sender s, byte* d, int len) { sender = s; data = d; length = len; }
        public Span<byte> Span
        {
            get
            {
                if (!open) throw new InvalidOperationException("the reservation was committed or cancelled");
                return new Span<byte>(data, length);
            }
        }
        public void Commit()
        {
            if (!open) throw new InvalidOperationException("the reservation was committed or cancelled");
            open = false;
            Interop.Check(NativeMethods.shmkit_sender_commit((shmkit_sender*)sender.Raw));
        }
        public void Dispose()
        {
            if (open) { open = false; NativeMethods.shmkit_sender_cancel((shmkit_sender*)sender.Raw); }
        }
    }

    /// <summary>The receiving end of a queue channel.</summary>
    public sealed unsafe class Receiver : ShmkitObject
    {
        Receiver(IntPtr h) : base(h, p => NativeMethods.shmkit_receiver_close((shmkit_receiver*)p)) { }

        public static Receiver Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_receiver* h;
            var o = options.Native;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_receiver_connect(n, &o, &h));
            return new Receiver((IntPtr)h);
        }

        /// <summary>Receives into buffer; returns the length. A longer message stays queued:
        /// ShmkitException BufferTooSmall with Count = its length.</summary>
        public int Receive(Span<byte> buffer, TimeSpan? timeout = null)
        {
            UIntPtr len;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(buffer))
                s = NativeMethods.shmkit_receiver_recv((shmkit_receiver*)Raw, p, (UIntPtr)buffer.Length, &len, Interop.Ms(timeout));
            Interop.Check(s, (ulong)len);
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
            if (lend.Error != null) throw lend.Error;
            Interop.Check(s);
        }
    }

    /// <summary>The publisher of a broadcast channel.</summary>
    public sealed unsafe class Publisher : ShmkitObject
    {
        Publisher(IntPtr h) : base(h, p => NativeMethods.shmkit_publisher_close((shmkit_publisher*)p)) { }

        public static Publisher Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_publisher* h;
            var o = options.Native;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_publisher_connect(n, &o, &h));
            return new Publisher((IntPtr)h);
        }

        public void Publish(ReadOnlySpan<byte> message)
        {
            fixed (byte* p = &MemoryMarshal.GetReference(message))
                Interop.Check(NativeMethods.shmkit_publisher_publish((shmkit_publisher*)Raw, p, (UIntPtr)message.Length));
        }
    }

    /// <summary>A subscriber; Receive throws ShmkitException Lagged (Count = missed) when it fell behind.</summary>
    public sealed unsafe class Subscriber : ShmkitObject
    {
        Subscriber(IntPtr h) : base(h, p => NativeMethods.shmkit_subscriber_close((shmkit_subscriber*)p)) { }

        public static Subscriber Connect(string name, ChannelOptions options = default(ChannelOptions))
        {
            shmkit_subscriber* h;
            var o = options.Native;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_subscriber_connect(n, &o, &h));
            return new Subscriber((IntPtr)h);
        }

        public int Receive(Span<byte> buffer, TimeSpan? timeout = null)
        {
            UIntPtr len;
            ulong missed = 0;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(buffer))
                s = NativeMethods.shmkit_subscriber_recv((shmkit_subscriber*)Raw, p, (UIntPtr)buffer.Length, &len, Interop.Ms(timeout), &missed);
            Interop.Check(s, s == shmkit_status.SHMKIT_ERR_LAGGED ? missed : (ulong)len);
            return (int)len;
        }
    }

    /// <summary>A request/response client.</summary>
    public sealed unsafe class RpcClient : ShmkitObject
    {
        RpcClient(IntPtr h) : base(h, p => NativeMethods.shmkit_rpc_client_close((shmkit_rpc_client*)p)) { }

        public static RpcClient Connect(string name)
        {
            shmkit_rpc_client* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_rpc_client_connect(n, &h));
            return new RpcClient((IntPtr)h);
        }

        public byte[] Call(ReadOnlySpan<byte> request, TimeSpan? timeout = null)
        {
            byte[] reply = null;
            var lend = new Callbacks.Lend(m => reply = m.ToArray());
            NativeMethods.shmkit_rpc_client_call_with_callback_delegate cb = lend.Call;
            shmkit_status s;
            fixed (byte* p = &MemoryMarshal.GetReference(request))
                s = NativeMethods.shmkit_rpc_client_call_with((shmkit_rpc_client*)Raw, p, (UIntPtr)request.Length, cb, null, Interop.Ms(timeout));
            GC.KeepAlive(cb);
            Interop.Check(s);
            return reply;
        }
    }

    /// <summary>A request/response server.</summary>
    public sealed unsafe class RpcServer : ShmkitObject
    {
        RpcServer(IntPtr h) : base(h, p => NativeMethods.shmkit_rpc_server_close((shmkit_rpc_server*)p)) { }

        public static RpcServer Bind(string name)
        {
            shmkit_rpc_server* h;
            fixed (byte* n = Interop.Utf8(name)) Interop.Check(NativeMethods.shmkit_rpc_server_bind(n, &h));
            return new RpcServer((IntPtr)h);
        }

        /// <summary>Receives one request and replies with handler's answer.</summary>
        public void ServeOne(Func<byte[], byte[]> handler, TimeSpan? timeout = null)
        {
            var buf = new byte[4096];
            UIntPtr len;
            shmkit_status s;
            fixed (byte* p = buf)
                s = NativeMethods.shmkit_rpc_server_recv((shmkit_rpc_server*)Raw, p, (UIntPtr)buf.Length, &len, Interop.Ms(timeout));
            if (s == shmkit_status.SHMKIT_ERR_BUFFER_TOO_SMALL)
            {
                buf = new byte[(int)len];
                fixed (byte* p = buf)
                    s = NativeMethods.shmkit_rpc_server_recv((shmkit_rpc_server*)Raw, p, (UIntPtr)buf.Length, &len, Interop.Ms(timeout));
            }
            Interop.Check(s);
            var request = new byte[(int)len];
            Array.Copy(buf, request, request.Length);
            var answer = handler(request);
            fixed (byte* a = answer)
                Interop.Check(NativeMethods.shmkit_rpc_server_reply((shmkit_rpc_server*)Raw, a, (UIntPtr)answer.Length));
        }
    }
}
