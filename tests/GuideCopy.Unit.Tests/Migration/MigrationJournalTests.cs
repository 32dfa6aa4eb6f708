using GuideCopy.Migration.Journal;

namespace GuideCopy.Unit.Tests.Migration;

/// <summary>The journal every agent writes before each irreversible step: what a restarted agent reads back.</summary>
[TestFixture]
public sealed class MigrationJournalTests
{
    private string _dir = null!;

    [SetUp]
    public void Dir() => _dir = Path.Combine(Path.GetTempPath(), $"gc-journal-{Guid.NewGuid():N}");

    [TearDown]
    public void Clean()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private static JournalEntry Entry(string id, MigrationStage stage) =>
        new() { Id = id, Role = MigrationRole.Source, Domain = "vm", Stage = stage, FrozenRam = "/dev/shm/x.ram", SessionId = 42 };

    [Test]
    public void AStageWrittenIsTheStageReadBackByAnotherJournal()
    {
        new MigrationJournal(_dir).Write(Entry("vm-1", MigrationStage.DeviceStateSaved));
        new MigrationJournal(_dir).Write(Entry("vm-1", MigrationStage.Committed));
        var back = new MigrationJournal(_dir).Read("vm-1")!;
        Assert.That(back.Stage, Is.EqualTo(MigrationStage.Committed));
        Assert.That(back.SessionId, Is.EqualTo(42UL));
        Assert.That(back.FrozenRam, Is.EqualTo("/dev/shm/x.ram"));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { Path.Combine(_dir, "vm-1.json") }), "no temporary file stays");
    }

    [TestCase("/etc")]
    [TestCase("../x")]
    [TestCase(".hidden")]
    [TestCase("")]
    [TestCase("a b")]
    public void AnIdThatIsNotAFileNameIsRefused(string id)
    {
        var journal = new MigrationJournal(_dir);
        Assert.Throws<ArgumentException>(() => journal.Write(Entry(id, MigrationStage.Preflight)));
        Assert.That(MigrationJournal.IsValidId(id), Is.False);
    }

    [Test]
    public void AnUnreadableEntryIsNamedAndSkipped()
    {
        var journal = new MigrationJournal(_dir);
        journal.Write(Entry("good-1", MigrationStage.Committed));
        File.WriteAllText(Path.Combine(_dir, "torn-2.json"), "{\"id\":\"torn-2\",\"sta");
        File.WriteAllText(Path.Combine(_dir, "other-3.json"), File.ReadAllText(Path.Combine(_dir, "good-1.json")));
        var bad = new List<string>();
        var all = journal.ReadAll(bad.Add);
        Assert.That(all.Select(e => e.Id), Is.EqualTo(new[] { "good-1" }));
        Assert.That(bad, Has.Count.EqualTo(2), "a torn file and an entry whose id is not its file name");
    }

    [Test]
    public void PruneForgetsOnlyEndedMigrations()
    {
        var journal = new MigrationJournal(_dir);
        journal.Write(Entry("done-1", MigrationStage.Completed));
        journal.Write(Entry("live-2", MigrationStage.Committed));
        journal.Prune(TimeSpan.Zero);
        Assert.That(journal.ReadAll().Select(e => e.Id), Is.EqualTo(new[] { "live-2" }));
    }

    [Test]
    public void CommittedAndLaterAreTheFarSideOfTheCommitPoint()
    {
        Assert.That(Enum.GetValues<MigrationStage>().Where(s => s.IsCommitted()), Is.EqualTo(new[] { MigrationStage.Committed, MigrationStage.Completed }));
        Assert.That(MigrationStage.Committing.IsCommitted(), Is.False, "committing is undecided until the source answers");
    }
}
