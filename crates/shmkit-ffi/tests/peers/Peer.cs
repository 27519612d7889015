// The C# test peer of the cross-language matrix, written with the Shmkit binding;
// the same commands and output as peer.c and the Rust shmkit-peer.
using System;
using System.Threading;
using Shmkit;

static class Peer
{
    static readonly uint[] Table = MakeTable();

    static uint[] MakeTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }

    static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        crc = ~crc;
        foreach (byte b in data) crc = Table[(crc ^ b) & 0xff] ^ (crc >> 8);
        return ~crc;
    }

    // The checksum of one message: its length (8 bytes, little-endian), then it.
    static uint CrcMessage(uint crc, ReadOnlySpan<byte> m)
    {
        var len = BitConverter.GetBytes((ulong)m.Length);
        return Crc(Crc(crc, len), m);
    }

    static ulong Next(ref ulong s)
    {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return unchecked(s * 0x2545F4914F6CDD1DUL);
    }

    static int Main(string[] args)
    {
        try
        {
            var minute = TimeSpan.FromSeconds(60);
            if (args.Length == 5 && args[0] == "send")
            {
                ulong count = ulong.Parse(args[2]), seed = ulong.Parse(args[3]) | 1, max = ulong.Parse(args[4]);
                var buf = new byte[max + 8];
                uint crc = 0;
                using (var tx = Sender.Connect(args[1]))
                {
                    for (ulong i = 0; i < count; i++)
                    {
                        ulong limit = Next(ref seed) % 100 == 0 ? max : Math.Min(max, 4096);
                        int len = (int)(Next(ref seed) % (limit + 1));
                        for (int j = 0; j < len; j += 8)
                            BitConverter.GetBytes(Next(ref seed)).CopyTo(buf, j);
                        var msg = new ReadOnlySpan<byte>(buf, 0, len);
                        tx.Send(msg, minute);
                        crc = CrcMessage(crc, msg);
                    }
                }
                Console.WriteLine("{0} {1}", count, crc);
                return 0;
            }
            if (args.Length == 3 && args[0] == "recv")
            {
                ulong count = ulong.Parse(args[2]);
                uint crc = 0;
                var buf = new byte[1 << 16];
                using (var rx = Receiver.Connect(args[1]))
                {
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                    for (ulong i = 0; i < count; i++)
                    {
                        int n;
                        try { n = rx.Receive(buf, minute); }
                        catch (ShmkitException e) when (e.Status == Status.BufferTooSmall)
                        {
                            buf = new byte[e.Count];   // the message stayed queued
                            n = rx.Receive(buf, minute);
                        }
                        crc = CrcMessage(crc, new ReadOnlySpan<byte>(buf, 0, n));
                    }
                }
                Console.WriteLine("{0} {1}", count, crc);
                return 0;
            }
            if (args.Length == 2 && (args[0] == "hold" || args[0] == "lock"))
            {
                var m = args[0] == "lock" ? NamedMutex.CreateOrOpen(args[1]) : NamedMutex.Open(args[1]);
                if (args[0] == "lock")
                {
                    // Keep it open while the holder is killed; lock when told.
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                    Console.ReadLine();
                }
                var held = m.Lock(TimeSpan.FromSeconds(10));
                if (args[0] == "lock")
                {
                    Console.WriteLine(held.OwnerDied ? "owner-died" : "locked");
                    return 0;
                }
                Console.WriteLine("locked");
                Console.Out.Flush();
                Thread.Sleep(TimeSpan.FromHours(1));
                return 0;
            }
            Console.Error.WriteLine("usage: Peer send NAME COUNT SEED MAX | recv NAME COUNT | hold NAME | lock NAME");
            return 2;
        }
        catch (ShmkitException e)
        {
            Console.Error.WriteLine("peer (C#): {0}: {1}", e.Status, e.Message);
            return 1;
        }
    }
}
