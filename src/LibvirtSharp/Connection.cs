using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>A connection to one libvirtd (virConnectPtr).</summary>
public sealed unsafe class Connection : IDisposable
{
    private readonly ConnectHandle _handle;

    private Connection(ConnectHandle handle) => _handle = handle;

    /// <summary>The underlying handle, for calls into <see cref="Libvirt"/> the object model does not cover.</summary>
    public ConnectHandle Handle => _handle;

    /// <summary>virConnectOpen (or virConnectOpenReadOnly).</summary>
    public static Connection Open(string uri, bool readOnly = false)
    {
        LibvirtLibrary.EnsureInitialized();
        nint p = readOnly ? Libvirt.virConnectOpenReadOnly(uri) : Libvirt.virConnectOpen(uri);
        return new Connection(new ConnectHandle(LibvirtException.ThrowIfNull(p, readOnly ? nameof(Libvirt.virConnectOpenReadOnly) : nameof(Libvirt.virConnectOpen))));
    }

    /// <summary>The canonical URI of this connection (virConnectGetURI).</summary>
    public string Uri
    {
        get
        {
            using var c = _handle.Lease();
            return LibvirtStrings.Take(LibvirtException.ThrowIfNull(Libvirt.virConnectGetURI(c.Pointer), nameof(Libvirt.virConnectGetURI)))!;
        }
    }

    public string Hostname
    {
        get
        {
            using var c = _handle.Lease();
            return LibvirtStrings.Take(LibvirtException.ThrowIfNull(Libvirt.virConnectGetHostname(c.Pointer), nameof(Libvirt.virConnectGetHostname)))!;
        }
    }

    /// <summary>The daemon's libvirt version, major*1,000,000 + minor*1,000 + micro (virConnectGetLibVersion).</summary>
    public ulong LibVersion
    {
        get
        {
            using var c = _handle.Lease();
            nuint v;
            LibvirtException.ThrowIfNegative(Libvirt.virConnectGetLibVersion(c.Pointer, &v), nameof(Libvirt.virConnectGetLibVersion));
            return v;
        }
    }

    /// <summary>The hypervisor's version (QEMU for qemu://), major*1,000,000 + minor*1,000 + micro (virConnectGetVersion).</summary>
    public ulong HypervisorVersion
    {
        get
        {
            using var c = _handle.Lease();
            nuint v;
            LibvirtException.ThrowIfNegative(Libvirt.virConnectGetVersion(c.Pointer, &v), nameof(Libvirt.virConnectGetVersion));
            return v;
        }
    }

    public bool IsAlive
    {
        get
        {
            using var c = _handle.Lease();
            return Libvirt.virConnectIsAlive(c.Pointer) == 1;
        }
    }

    /// <summary>virDomainLookupByName; throws with VIR_ERR_NO_DOMAIN when there is none.</summary>
    public Domain LookupDomain(string name)
    {
        using var c = _handle.Lease();
        return Wrap(Libvirt.virDomainLookupByName(c.Pointer, name), nameof(Libvirt.virDomainLookupByName));
    }

    /// <summary>virDomainLookupByName, or null when no such domain exists.</summary>
    public Domain? TryLookupDomain(string name)
    {
        try { return LookupDomain(name); }
        catch (LibvirtException e) when (e.Code == virErrorNumber.VIR_ERR_NO_DOMAIN) { return null; }
    }

    public Domain LookupDomainByUuid(string uuid)
    {
        using var c = _handle.Lease();
        return Wrap(Libvirt.virDomainLookupByUUIDString(c.Pointer, uuid), nameof(Libvirt.virDomainLookupByUUIDString));
    }

    /// <summary>Defines a persistent domain (virDomainDefineXMLFlags); it is not started.</summary>
    public Domain DefineDomain(string xml, virDomainDefineFlags flags = 0)
    {
        using var c = _handle.Lease();
        return Wrap(Libvirt.virDomainDefineXMLFlags(c.Pointer, xml, (uint)flags), nameof(Libvirt.virDomainDefineXMLFlags));
    }

    /// <summary>Creates and starts a transient domain (virDomainCreateXML); it vanishes when destroyed.</summary>
    public Domain CreateTransient(string xml, virDomainCreateFlags flags = 0)
    {
        using var c = _handle.Lease();
        return Wrap(Libvirt.virDomainCreateXML(c.Pointer, xml, (uint)flags), nameof(Libvirt.virDomainCreateXML));
    }

    /// <summary>
    /// virDomainCreateXMLWithFiles: like <see cref="CreateTransient"/>, passing <paramref name="fds"/>
    /// to QEMU, where they appear as fds 3, 4, ... (LISTEN_FDS style). Works only over a local UNIX socket.
    /// </summary>
    public Domain CreateTransientWithFiles(string xml, ReadOnlySpan<int> fds, virDomainCreateFlags flags = 0)
    {
        using var c = _handle.Lease();
        fixed (int* f = fds)
            return Wrap(Libvirt.virDomainCreateXMLWithFiles(c.Pointer, xml, (uint)fds.Length, f, (uint)flags), nameof(Libvirt.virDomainCreateXMLWithFiles));
    }

    /// <summary>virConnectListAllDomains; every returned <see cref="Domain"/> must be disposed.</summary>
    public IReadOnlyList<Domain> ListAllDomains(virConnectListAllDomainsFlags flags = 0)
    {
        using var c = _handle.Lease();
        nint* list = null;
        int n = Libvirt.virConnectListAllDomains(c.Pointer, &list, (uint)flags);
        LibvirtException.ThrowIfNegative(n, nameof(Libvirt.virConnectListAllDomains));
        try
        {
            var result = new Domain[n];
            for (int i = 0; i < n; i++) result[i] = new Domain(new DomainHandle(list[i]));
            return result;
        }
        finally
        {
            // The array is the caller's; each element's reference now belongs to a DomainHandle.
            System.Runtime.InteropServices.NativeMemory.Free(list);
        }
    }

    /// <summary>virStreamNew; the stream is tied to this connection.</summary>
    public LibvirtStream NewStream(virStreamFlags flags = 0)
    {
        using var c = _handle.Lease();
        return new LibvirtStream(new StreamHandle(LibvirtException.ThrowIfNull(Libvirt.virStreamNew(c.Pointer, (uint)flags), nameof(Libvirt.virStreamNew))));
    }

    /// <summary>virConnectSetKeepAlive; needs <see cref="EventLoop"/> running.</summary>
    public void SetKeepAlive(int intervalSeconds, uint count)
    {
        using var c = _handle.Lease();
        LibvirtException.ThrowIfNegative(Libvirt.virConnectSetKeepAlive(c.Pointer, intervalSeconds, count), nameof(Libvirt.virConnectSetKeepAlive));
    }

    private static Domain Wrap(nint domain, string operation) => new(new DomainHandle(LibvirtException.ThrowIfNull(domain, operation)));

    public void Dispose() => _handle.Dispose();
}
