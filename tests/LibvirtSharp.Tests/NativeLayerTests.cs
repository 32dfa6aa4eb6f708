using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LibvirtSharp.Generator;
using LibvirtSharp.Native;
using NUnit.Framework;

namespace LibvirtSharp.Tests;

/// <summary>Checks the raw layer against the installed libraries, without a daemon.</summary>
[TestFixture]
public sealed class NativeLayerTests
{
    private static IEnumerable<(string Library, string Name)> Imports(Type t) =>
        t.GetMethods(BindingFlags.Public | BindingFlags.Static)
            .Select(m => (m, a: m.GetCustomAttribute<LibraryImportAttribute>()))
            .Where(x => x.a is not null)
            .Select(x => (x.a!.LibraryName, x.a.EntryPoint ?? x.m.Name));

    [Test]
    public void EveryImportResolvesInTheInstalledLibraries()
    {
        var imports = Imports(typeof(Libvirt)).Concat(Imports(typeof(LibvirtQemu))).Concat(Imports(typeof(HandBound))).ToList();
        Assert.That(imports, Has.Count.GreaterThan(500));
        var missing = new List<string>();
        foreach (var group in imports.GroupBy(i => i.Library))
        {
            nint lib = NativeLibrary.Load(group.Key);
            missing.AddRange(group.Where(i => !NativeLibrary.TryGetExport(lib, i.Name, out _)).Select(i => $"{group.Key}:{i.Name}"));
        }
        Assert.That(missing, Is.Empty);
    }

    [Test]
    public void HandBoundDeclaresExactlyWhatTheGeneratorListsAsHandBound()
    {
        var declared = Imports(typeof(HandBound)).Select(i => i.Name).Order(StringComparer.Ordinal);
        Assert.That(declared, Is.EqualTo(BindingGenerator.HandBound.Keys.Order(StringComparer.Ordinal)));
    }

    [Test]
    public void StructLayoutsMatchLp64C()
    {
        // sizeof on x86_64 Linux: char[80] + int + pad + 8-byte union; virError pads after level.
        Assert.That(Unsafe.SizeOf<virTypedParameter>(), Is.EqualTo(96));
        Assert.That(Marshal.OffsetOf<virTypedParameter>(nameof(virTypedParameter.value)), Is.EqualTo((nint)88));
        Assert.That(Unsafe.SizeOf<virError>(), Is.EqualTo(80));
        Assert.That(Unsafe.SizeOf<virDomainInfo>(), Is.EqualTo(40));
    }

    [Test]
    public void FlagsEnumsAreFlagsAndConstantsCarryLibvirtValues()
    {
        Assert.That(typeof(virDomainMigrateFlags).IsDefined(typeof(FlagsAttribute)), Is.True);
        Assert.That(typeof(virDomainState).IsDefined(typeof(FlagsAttribute)), Is.False);
        Assert.That((uint)virDomainMigrateFlags.VIR_MIGRATE_POSTCOPY, Is.EqualTo(1u << 15));
        Assert.That(TypedParamFields.VIR_MIGRATE_PARAM_BANDWIDTH, Is.EqualTo("bandwidth"));
        Assert.That(Macros.VIR_TYPED_PARAM_FIELD_LENGTH, Is.EqualTo(80));
        Assert.That(LibvirtLibrary.Version, Is.GreaterThanOrEqualTo((ulong)Macros.LIBVIR_VERSION_NUMBER / 1000 * 1000));
    }

    [Test]
    public void TypedParamsRoundTripThroughLibvirt()
    {
        using var p = new TypedParams()
            .Add(TypedParamFields.VIR_MIGRATE_PARAM_BANDWIDTH, 12UL)
            .Add(TypedParamFields.VIR_MIGRATE_PARAM_DEST_NAME, "guest-b")
            .Add(TypedParamFields.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS, 2)
            .Add("flag", true);
        unsafe
        {
            var read = TypedParams.Read(p.Pointer, p.Count);
            Assert.That(read[TypedParamFields.VIR_MIGRATE_PARAM_BANDWIDTH], Is.EqualTo(12UL));
            Assert.That(read[TypedParamFields.VIR_MIGRATE_PARAM_DEST_NAME], Is.EqualTo("guest-b"));
            Assert.That(read[TypedParamFields.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS], Is.EqualTo(2));
            Assert.That(read["flag"], Is.EqualTo(true));
        }
    }

    [Test]
    public void AParameterNameLongerThanTheFieldFailsWithLibvirtsMessage()
    {
        using var p = new TypedParams();
        // virTypedParameter.field is char[VIR_TYPED_PARAM_FIELD_LENGTH]; libvirt refuses longer names.
        var e = Assert.Throws<LibvirtException>(() => p.Add(new string('x', Macros.VIR_TYPED_PARAM_FIELD_LENGTH + 1), 1));
        Assert.That(e!.LibvirtMessage, Does.Contain("too long"));
        Assert.That(p.Count, Is.Zero);
    }
}
