import django.contrib.postgres.fields
import django.core.validators
from django.db import migrations, models

# Knowledge regions become the hub's lower-case region codes ("EU" -> "eu"): bases, texts and search chunks.
LOWER = """
UPDATE knowledge_knowledgebase
   SET regions = ARRAY(SELECT lower(r) FROM unnest(regions) WITH ORDINALITY AS u(r, n) ORDER BY n)
 WHERE regions::text <> lower(regions::text);
UPDATE knowledge_translation SET region = lower(region) WHERE region <> lower(region);
UPDATE knowledge_chunk SET region = lower(region) WHERE region <> lower(region);
"""
UPPER = """
UPDATE knowledge_knowledgebase
   SET regions = ARRAY(SELECT upper(r) FROM unnest(regions) WITH ORDINALITY AS u(r, n) ORDER BY n)
 WHERE regions::text <> upper(regions::text);
UPDATE knowledge_translation SET region = upper(region) WHERE region <> upper(region);
UPDATE knowledge_chunk SET region = upper(region) WHERE region <> upper(region);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="translation",
            name="rejected_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="translation",
            name="rejected_by_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="translation",
            name="rejection_reason",
            field=models.TextField(blank=True, default="", verbose_name="reason for rejection"),
        ),
        migrations.AlterField(
            model_name="knowledgebase",
            name="regions",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(
                    max_length=16,
                    validators=[
                        django.core.validators.RegexValidator(
                            "^[a-z][a-z0-9]{1,15}$", "Use a region code such as “eu” or “us”."
                        )
                    ],
                ),
                blank=True,
                default=list,
                help_text="Regions that may have regional variants, e.g. eu, us.",
                size=None,
                verbose_name="regions served",
            ),
        ),
        migrations.AlterField(
            model_name="translation",
            name="region",
            field=models.CharField(
                blank=True,
                default="",
                max_length=16,
                validators=[
                    django.core.validators.RegexValidator(
                        "^[a-z][a-z0-9]{1,15}$", "Use a region code such as “eu” or “us”."
                    )
                ],
                verbose_name="region",
            ),
        ),
        migrations.RunSQL(LOWER, UPPER, hints={"silo": "region"}),
    ]
