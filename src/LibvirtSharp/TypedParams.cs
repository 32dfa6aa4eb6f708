using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>
/// A virTypedParameter array built with libvirt's own virTypedParamsAdd* (which copy the name
/// and any string value) and freed with virTypedParamsFree, so ownership never crosses into
/// managed memory. Field names are in <see cref="TypedParamFields"/> (VIR_MIGRATE_PARAM_* ...).
/// </summary>
public sealed unsafe class TypedParams : IDisposable
{
    private virTypedParameter* _params;
    private int _count;
    private int _capacity;

    public int Count => _count;

    /// <summary>The array itself, valid until the next Add or Dispose; for calls into <see cref="Libvirt"/> directly.</summary>
    public virTypedParameter* Pointer => _params;

    public TypedParams Add(string name, int value)
    {
        var s = Begin();
        return End(Libvirt.virTypedParamsAddInt(&s.Params, &s.Count, &s.Capacity, name, value), s, name);
    }

    public TypedParams Add(string name, uint value)
    {
        var s = Begin();
        return End(Libvirt.virTypedParamsAddUInt(&s.Params, &s.Count, &s.Capacity, name, value), s, name);
    }

    public TypedParams Add(string name, long value)
    {
        var s = Begin();
        return End(Libvirt.virTypedParamsAddLLong(&s.Params, &s.Count, &s.Capacity, name, value), s, name);
    }

    public TypedParams Add(string name, ulong value)
    {
        var s = Begin();
        return End(Libvirt.virTypedParamsAddULLong(&s.Params, &s.Count, &s.Capacity, name, value), s, name);
    }

    public TypedParams Add(string name, double value)
    {
        var s = Begin();
        return End(Libvirt.virTypedParamsAddDouble(&s.Params, &s.Count, &s.Capacity, name, value), s, name);
    }

    public TypedParams Add(string name, bool value)
    {
        var s = Begin();
        return End(Libvirt.virTypedParamsAddBoolean(&s.Params, &s.Count, &s.Capacity, name, value ? 1 : 0), s, name);
    }

    public TypedParams Add(string name, string value)
    {
        var s = Begin();
        return End(Libvirt.virTypedParamsAddString(&s.Params, &s.Count, &s.Capacity, name, value), s, name);
    }

    // libvirt may realloc the array: the Add functions take its address, so they get a copy on
    // the stack (a managed field could move under a raw pointer) and the result is stored back.
    private struct Array
    {
        public virTypedParameter* Params;
        public int Count;
        public int Capacity;
    }

    private Array Begin()
    {
        ObjectDisposedException.ThrowIf(_capacity < 0, this);
        return new Array { Params = _params, Count = _count, Capacity = _capacity };
    }

    private TypedParams End(int rc, Array s, string name)
    {
        _params = s.Params;
        _count = s.Count;
        _capacity = s.Capacity;
        LibvirtException.ThrowIfNegative(rc, "virTypedParamsAdd " + name);
        return this;
    }

    /// <summary>Reads a typed-parameter array into name -> value (int, uint, long, ulong, double, bool or string).</summary>
    public static Dictionary<string, object> Read(virTypedParameter* p, int n)
    {
        var result = new Dictionary<string, object>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            virTypedParameter* tp = &p[i];
            string name = LibvirtStrings.Borrow((nint)tp->field)!;
            object? value = (virTypedParameterType)tp->type switch
            {
                virTypedParameterType.VIR_TYPED_PARAM_INT => tp->value.i,
                virTypedParameterType.VIR_TYPED_PARAM_UINT => tp->value.ui,
                virTypedParameterType.VIR_TYPED_PARAM_LLONG => tp->value.l,
                virTypedParameterType.VIR_TYPED_PARAM_ULLONG => tp->value.ul,
                virTypedParameterType.VIR_TYPED_PARAM_DOUBLE => tp->value.d,
                virTypedParameterType.VIR_TYPED_PARAM_BOOLEAN => tp->value.b != 0,
                virTypedParameterType.VIR_TYPED_PARAM_STRING => LibvirtStrings.Borrow(tp->value.s),
                _ => null,
            };
            if (value is not null) result[name] = value;
        }
        return result;
    }

    public void Dispose()
    {
        if (_capacity < 0) return;
        if (_params is not null) Libvirt.virTypedParamsFree(_params, _count);
        _params = null;
        _count = 0;
        _capacity = -1;
        GC.SuppressFinalize(this);
    }

    ~TypedParams() => Dispose();
}
