using LibvirtSharp.Generator;
using NUnit.Framework;

namespace LibvirtSharp.Tests;

/// <summary>The committed Generated/ folder must be exactly what the generator makes from this machine's libvirt-dev XML.</summary>
[TestFixture]
public sealed class GeneratorDriftTests
{
    [Test]
    public void RegeneratingIntoATempDirMatchesTheCommittedFiles()
    {
        string api = ApiLocator.PkgConfig("libvirt_api", "libvirt");
        string qemuApi = ApiLocator.PkgConfig("libvirt_qemu_api", "libvirt-qemu");
        string temp = Directory.CreateTempSubdirectory("libvirtsharp-gen-").FullName;
        try
        {
            var result = new BindingGenerator(ApiModel.Load(api, qemuApi)).Generate();
            OutputWriter.Write(result, temp);

            var fresh = Directory.GetFiles(temp).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
            var committed = Directory.GetFiles(RepoPaths.GeneratedDir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
            Assert.That(committed, Is.EqualTo(fresh), $"file set differs; run: {BindingGenerator.RegenerateCommand}");
            foreach (string name in fresh!)
            {
                string a = File.ReadAllText(Path.Combine(temp, name!));
                string b = File.ReadAllText(Path.Combine(RepoPaths.GeneratedDir, name!));
                Assert.That(b, Is.EqualTo(a), $"{name} drifted from the generator output; run: {BindingGenerator.RegenerateCommand}");
            }
            TestContext.Out.WriteLine($"functions in XML {result.FunctionsInXml}, generated {result.Generated}, hand-bound {result.HandBound}, skipped {result.Skipped}");
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    [Test]
    public void GeneratingTwiceGivesTheSameOutput()
    {
        var model = ApiModel.Load(ApiLocator.PkgConfig("libvirt_api", "libvirt"), ApiLocator.PkgConfig("libvirt_qemu_api", "libvirt-qemu"));
        var a = new BindingGenerator(model).Generate().Files;
        var b = new BindingGenerator(model).Generate().Files;
        Assert.That(b, Is.EqualTo(a));
    }
}
